"""Depth, instance masks and beauty frames of the export, and what they leave behind (real bpy, Cycles on the CPU)."""

import math

import numpy as np
import pytest
from support.scenes import add_mesh, build_standard_shot

pytestmark = pytest.mark.blender_compat


def _scene_with_card():
    """The standard shot at 160 × 96, 9 frames, plus 'Card': a plane entity facing the camera (parallel to the image
    plane, so the planar depth under its origin is exactly its origin's depth)."""
    import bpy

    scene = build_standard_shot(160, 96, 9)
    card = add_mesh("plane", bpy.data.collections["TrajPlate"], "Card", size=0.8, location=(-2.2, -5.0, 1.8))
    card.rotation_euler = scene.camera.rotation_euler
    return scene


def _settings(scene):
    import bpy

    render, cycles, vl = scene.render, scene.cycles, bpy.context.view_layer
    return {
        "engine": render.engine, "filepath": render.filepath, "format": render.image_settings.file_format,
        "depth": render.image_settings.color_depth, "samples": cycles.samples, "filter": cycles.filter_width,
        "bounces": cycles.max_bounces, "persistent": render.use_persistent_data, "z": vl.use_pass_z,
        "index": vl.use_pass_object_index, "frame": scene.frame_current, "camera": scene.camera.name,
        "dof": scene.camera.data.dof.use_dof, "compositing": render.use_compositing,
        "pass_index": {o.name: o.pass_index for o in scene.objects},
    }


def test_depth_masks_and_round_trip(empty_scene, tmp_path):
    from addon.bundle import write_bundle
    from addon.export import build_shot

    scene = _scene_with_card()
    scene.camera.data.dof.use_dof = True  # must not blur the data passes, and must come back on
    scene.objects["Ground"].pass_index = 7  # not an entity: must read 0 in the mask, and keep its index
    scene.frame_set(4)
    before = _settings(scene)
    meta, arrays, frames, _ = build_shot(scene)
    assert _settings(scene) == before

    names = [e["name"] for e in meta["entities"]]
    depth, mask = arrays["depth"], arrays["instance_mask"]
    assert depth.shape == mask.shape == (9, 96, 160) and depth.dtype == np.float32 and mask.dtype == np.uint8
    assert np.isinf(depth).any() and set(np.unique(mask)) == set(range(len(names) + 1))

    card = names.index("Card")
    u, v = np.floor(arrays["track_2d"][:, card]).astype(int).T
    np.testing.assert_allclose(depth[np.arange(9), v, u], arrays["track_depth"][:, card], rtol=1e-5)

    boxes, checked = arrays["box_2d"], 0
    for f in range(9):
        for j in range(len(names)):
            others = np.delete(boxes[f], j, axis=0)
            overlap = ((others[:, 0] < boxes[f, j, 2]) & (others[:, 2] > boxes[f, j, 0])
                       & (others[:, 1] < boxes[f, j, 3]) & (others[:, 3] > boxes[f, j, 1]))
            if overlap.any():
                continue
            ys, xs = np.nonzero(mask[f] == j + 1)
            np.testing.assert_allclose([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], boxes[f, j], atol=1.0,
                                       err_msg=f"{names[j]} @{f}")
            checked += 1
    assert checked >= 12

    assert list(frames) == ["first_frame.png"] and meta["renders"] == {
        "depth": True, "instance_mask": True, "engine": "CYCLES"}
    path = write_bundle(tmp_path / "shot.zip", meta, arrays, frames)
    load_shot = pytest.importorskip("trajplate.shot", reason="the round trip needs the backend").load_shot
    shot = load_shot(path)
    for name, array in arrays.items():
        np.testing.assert_array_equal(getattr(shot, name), array, err_msg=name)
    assert shot.first_frame.shape == (96, 160, 3) and shot.first_frame.std() > 5
    assert [e.name for e in shot.meta.entities] == names


def test_occlusion_from_renders_matches_ray_casts(empty_scene):
    from addon.export import ExportOptions, build_shot

    scene = build_standard_shot(96, 64, 13)
    _, rendered, _, _ = build_shot(scene, ExportOptions(include_renders=True))
    _, cast, _, _ = build_shot(scene, ExportOptions(include_renders=False))
    assert not rendered["track_visible"].all()
    np.testing.assert_array_equal(rendered["track_visible"], cast["track_visible"])


def test_rgb_frames_and_cancel_leave_scene_as_it_was(empty_scene, tmp_path):
    from addon.export import ExportCancelled, ExportOptions, build_shot, export_shot

    scene = build_standard_shot(64, 48, 5)
    options = ExportOptions(include_rgb_frames=True, frame_range=(2, 4, 1))
    meta, _, frames, _ = build_shot(scene, options)
    assert sorted(frames) == ["first_frame.png", "rgb/0001.png", "rgb/0002.png", "rgb/0003.png"]
    assert meta["frames"] == list(frames)

    before = _settings(scene)
    stages = []

    def progress(done, total, stage):
        stages.append(stage)

    def cancel_in_renders():
        return "depth and masks" in stages and len(stages) > 8

    target = tmp_path / "cancelled.zip"
    with pytest.raises(ExportCancelled):
        export_shot(target, scene, ExportOptions(), progress, cancel_in_renders)
    assert not target.exists() and list(tmp_path.iterdir()) == []
    assert _settings(scene) == before

    cv2 = pytest.importorskip("cv2", reason="decoding the PNG frames needs OpenCV")
    images = {name: cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR).astype(float)
              for name, data in frames.items()}
    assert images["rgb/0001.png"].shape == (48, 64, 3)
    same = np.abs(images["rgb/0001.png"] - images["first_frame.png"]).mean()  # the same frame, up to noise
    moved = np.abs(images["rgb/0003.png"] - images["first_frame.png"]).mean()
    assert same < moved / 2


def test_eevee_scene_falls_back_to_cycles_headless(empty_scene):
    import bpy

    from addon import compat
    from addon.export import ExportOptions, build_shot

    scene = build_standard_shot(48, 32, 3)
    scene.render.engine = next(e for e in compat.EEVEE_ENGINES if e in _engine_ids(bpy))
    meta, _, frames, warnings = build_shot(scene, ExportOptions())
    assert meta["renders"]["engine"] == "CYCLES" and "first_frame.png" in frames
    assert any("Cycles" in w for w in warnings)
    assert scene.render.engine in compat.EEVEE_ENGINES


def _engine_ids(bpy):
    return {item.identifier for item in bpy.types.RenderSettings.bl_rna.properties["engine"].enum_items}


def test_camera_facing_card_is_exact_in_metres_with_unit_scale(empty_scene):
    from addon.export import build_shot

    scene = _scene_with_card()
    scene.unit_settings.scale_length = 0.01
    scene.frame_end = 3
    meta, arrays, _, _ = build_shot(scene)
    card = [e["name"] for e in meta["entities"]].index("Card")
    u, v = np.floor(arrays["track_2d"][:, card]).astype(int).T
    np.testing.assert_allclose(arrays["depth"][np.arange(3), v, u], arrays["track_depth"][:, card], rtol=1e-5)
    assert math.isclose(meta["camera_settings"]["clip_start"], scene.camera.data.clip_start * 0.01, rel_tol=1e-6)
