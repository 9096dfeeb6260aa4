"""The shot-bundle contract across the two sides: a real bpy export read by trajplate.shot, checked against the
documented table (docs/shot-bundle.md) and against the conventions, recomputed here independently.

The writer (addon/bundle.py) and reader (trajplate.shot) never import each other; this file proves they agree.
"""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent

import trajplate.shot as reader  # noqa: E402
from support.synthetic import png, synthetic_parts  # noqa: E402

import addon.bundle as writer  # noqa: E402

CV_FROM_BLENDER = np.diag([1.0, -1.0, -1.0, 1.0])


def documented_arrays() -> dict[str, tuple[str, str]]:
    """name -> (shape, dtype) as written in the array table of docs/shot-bundle.md."""
    rows = re.findall(r"^\| `(\w+)` \| (\([^)]*\)) \| (\w+) \|", (ROOT / "docs" / "shot-bundle.md").read_text(), re.M)
    return {name: (shape, dtype) for name, shape, dtype in rows}


def test_writer_reader_and_docs_share_one_table():
    assert writer.ARRAY_SPECS == reader.ARRAY_SPECS
    assert writer.OPTIONAL_ARRAYS == reader.OPTIONAL_ARRAYS and writer.FORMAT_VERSION == reader.FORMAT_VERSION
    documented = {
        name: ("(" + ", ".join(map(str, symbols)) + (",)" if len(symbols) == 1 else ")"), dtype)
        for name, (symbols, dtype) in reader.ARRAY_SPECS.items()
    }
    assert documented_arrays() == documented


def test_both_writers_produce_the_same_arrays(tmp_path):
    meta, arrays, first_frame = synthetic_parts()
    from_addon = writer.write_bundle(tmp_path / "addon.zip", meta, arrays, {"first_frame.png": png(first_frame)})
    from_backend = reader.save_shot(reader.load_shot(from_addon), tmp_path / "backend.zip")
    npz = [zipfile.ZipFile(path).read("arrays.npz") for path in (from_addon, from_backend)]
    assert npz[0] == npz[1]


@pytest.fixture(scope="module")
def shot(shot_bundle):
    return reader.load_shot(shot_bundle)


def test_real_export_matches_the_documented_table(shot):
    sizes = {"F": shot.num_frames, "N": shot.num_entities, "H": shot.height, "W": shot.width}
    assert (shot.width, shot.height, shot.num_frames, shot.num_entities) == (720, 480, 49, 3)
    for name, (shape, dtype) in documented_arrays().items():
        array = getattr(shot, name)
        expected = tuple(sizes[s] if s in sizes else int(s) for s in re.findall(r"\w+", shape))
        assert array is not None, name
        assert (array.shape, str(array.dtype)) == (expected, dtype), name
    assert shot.first_frame.shape == (480, 720, 3) and shot.first_frame.dtype == np.uint8
    assert shot.first_frame.std() > 5  # a real render, not a blank image


def test_real_export_conventions(shot):
    w2c, k = shot.camera_w2c_opencv, shot.intrinsics
    np.testing.assert_allclose(w2c, CV_FROM_BLENDER @ np.linalg.inv(shot.camera_c2w_blender), atol=1e-6)
    settings = shot.meta.camera_settings
    if settings.shift_x == settings.shift_y == 0.0:  # pixel-corner principal point: centre of the image
        np.testing.assert_allclose(k[:, :2, 2], np.broadcast_to([shot.width / 2, shot.height / 2], (49, 2)))

    origin = np.concatenate([shot.entity_world[..., :3, 3], np.ones((49, 3, 1))], axis=-1)
    cam = (w2c[:, None] @ origin[..., None])[..., :3, 0]
    np.testing.assert_allclose(shot.track_depth, cam[..., 2], atol=1e-6)
    pix = (k[:, None] @ cam[..., None])[..., 0]
    front = cam[..., 2] > 0
    np.testing.assert_allclose(shot.track_2d[front], (pix[..., :2] / pix[..., 2:])[front], atol=1e-6)

    rotation = shot.entity_world[..., :3, :3]
    unscaled = shot.entity_world.copy()
    unscaled[..., :3, :3] = rotation / np.linalg.norm(rotation, axis=-2, keepdims=True)
    np.testing.assert_allclose(shot.entity_cam_opencv, w2c[:, None] @ unscaled, atol=1e-5)


def test_real_export_renders_agree_with_the_geometry(shot):
    """Masks and depth at the tracks agree with poses; and depth is exact: the cube's rendered planar depth equals
    a ray-box intersection computed from box_3d_world, K and w2c at pixel centres (+0.5)."""
    rows = np.arange(shot.num_frames)[:, None]
    px = np.floor(shot.track_2d).astype(int).clip(0, [shot.width - 1, shot.height - 1])
    visible = shot.track_visible
    assert visible.sum() > 0.8 * visible.size
    ids = shot.instance_mask[rows, px[..., 1], px[..., 0]]
    assert (ids == np.arange(1, shot.num_entities + 1))[visible].all()
    # The origin sits inside each mesh: the visible surface at the track is in front of it, by less than its size.
    surface = shot.depth[rows, px[..., 1], px[..., 0]]
    size = np.linalg.norm(shot.box_3d_world[..., 6, :] - shot.box_3d_world[..., 0, :], axis=-1)
    gap = shot.track_depth - surface
    assert ((gap > -1e-3) & (gap < size))[visible].all()

    cube = [entity.name for entity in shot.meta.entities].index("Cube")
    errors = []
    for f in range(0, shot.num_frames, 8):
        corners = shot.box_3d_world[f, cube] @ shot.camera_w2c_opencv[f, :3, :3].T + shot.camera_w2c_opencv[f, :3, 3]
        to_unit_box = np.linalg.inv(
            np.stack([corners[4] - corners[0], corners[3] - corners[0], corners[1] - corners[0]], 1)
        )
        mask = shot.instance_mask[f] == cube + 1
        inner = mask.copy()  # pixels whose 4-neighbours are cube too: no edge pixels
        inner[1:-1, 1:-1] = mask[1:-1, 1:-1] & mask[:-2, 1:-1] & mask[2:, 1:-1] & mask[1:-1, :-2] & mask[1:-1, 2:]
        ys, xs = np.nonzero(inner)
        rays = np.stack([xs + 0.5, ys + 0.5, np.ones(len(xs))], 1) @ np.linalg.inv(shot.intrinsics[f]).T
        slope, offset = rays @ to_unit_box.T, to_unit_box @ corners[0]  # box coords along the ray: t*slope - offset
        with np.errstate(divide="ignore", invalid="ignore"):
            near = np.nanmax(np.minimum(offset / slope, (1 + offset) / slope), axis=1)
        errors.append(np.abs(near - shot.depth[f, ys, xs]))
    errors = np.concatenate(errors)
    assert len(errors) > 1000 and errors.max() < 2e-3
