"""Shot bundle round trips: add-on writer -> backend reader, backend save_shot -> reader, atomic writes."""

from __future__ import annotations

import hashlib
import io
import json
import os
import zipfile

import numpy as np
import pytest
from support.synthetic import png, synthetic_parts
from trajplate.shot import ARRAY_SPECS, BundleError, Shot, load_shot, save_shot

from addon.bundle import BundleWriteError, write_bundle


def _frames(meta: dict, arrays: dict, first_frame: np.ndarray, rgb: bool) -> dict[str, bytes]:
    frames = {"first_frame.png": png(first_frame)}
    if rgb:
        for index in range(len(arrays["frame_numbers"])):
            frames[f"rgb/{index + 1:04d}.png"] = png(np.roll(first_frame, 3 * index, axis=1))
    return frames


def _assert_bit_exact(got: np.ndarray, want: np.ndarray, name: str) -> None:
    assert got.dtype == want.dtype and got.shape == want.shape, name
    assert got.tobytes() == want.tobytes(), name  # bit-exact: -0.0, inf and every float64 ulp survive


def test_writer_to_reader_round_trip_is_bit_exact(tmp_path):
    meta, arrays, first_frame = synthetic_parts(num_frames=7, frame_start=-2, frame_step=3, fps=23.976)
    frames = _frames(meta, arrays, first_frame, rgb=True)
    path = write_bundle(tmp_path / "shot.zip", meta, arrays, frames)

    shot = load_shot(path)
    assert set(shot.arrays()) == set(ARRAY_SPECS)
    for name, want in arrays.items():
        _assert_bit_exact(getattr(shot, name), want, name)
    _assert_bit_exact(shot.first_frame, first_frame, "first_frame")
    assert shot.rgb_frames.shape == (7, meta["resolution"][1], meta["resolution"][0], 3)
    _assert_bit_exact(shot.rgb_frames[2], np.roll(first_frame, 6, axis=1), "rgb_frames[2]")
    stored = json.loads(zipfile.ZipFile(path).read("shot.json"))
    assert stored == {**meta, "frames": sorted(frames)}
    assert shot.meta.model_dump(mode="json", exclude={"frames"}) == meta
    assert (shot.width, shot.height, shot.num_frames, shot.num_entities) == (96, 64, 7, 2)
    assert list(shot.frame_numbers) == [-2, 1, 4, 7, 10, 13, 16]
    assert shot.bundle_sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_bytes_path_and_file_object_sources_agree(tmp_path):
    meta, arrays, first_frame = synthetic_parts(renders=False)
    path = write_bundle(tmp_path / "b.zip", meta, arrays, {})
    data = path.read_bytes()
    shots = [load_shot(path), load_shot(str(path)), load_shot(data), load_shot(io.BytesIO(data))]
    assert len({shot.bundle_sha256 for shot in shots}) == 1
    assert all(shot.depth is None and shot.instance_mask is None and shot.first_frame is None for shot in shots)
    with open(path, "rb") as file:
        assert load_shot(file).bundle_sha256 == shots[0].bundle_sha256
    with pytest.raises(TypeError, match="binary file"):
        with open(path, encoding="latin-1") as text:
            load_shot(text)


def test_identical_shots_give_identical_bundles_with_normal_permissions(tmp_path):
    meta, arrays, first_frame = synthetic_parts()
    frames = {"first_frame.png": png(first_frame)}
    one = write_bundle(tmp_path / "1.zip", meta, arrays, frames)
    two = write_bundle(tmp_path / "2.zip", meta, arrays, frames)
    assert one.read_bytes() == two.read_bytes()
    umask = os.umask(0)
    os.umask(umask)
    assert one.stat().st_mode & 0o777 == 0o666 & ~umask  # like any file the user saves, not a private temp file


def test_save_shot_round_trip(tmp_path):
    meta, arrays, first_frame = synthetic_parts(num_frames=5)
    rgb = np.stack([np.roll(first_frame, i, axis=0) for i in range(5)])
    shot = Shot.from_arrays(meta, arrays, first_frame=first_frame, rgb_frames=rgb)
    again = load_shot(save_shot(shot, tmp_path / "saved.zip"))
    for name, array in shot.arrays().items():
        _assert_bit_exact(getattr(again, name), array, name)
    _assert_bit_exact(again.rgb_frames, rgb, "rgb_frames")
    assert again.meta == shot.meta


def test_camera_only_shot_round_trips(tmp_path):
    meta, arrays, first_frame = synthetic_parts(num_entities=0)
    assert arrays["track_2d"].shape == (12, 0, 2) and not arrays["instance_mask"].any()
    shot = load_shot(write_bundle(tmp_path / "cam.zip", meta, arrays, {"first_frame.png": png(first_frame)}))
    assert shot.num_entities == 0 and shot.entity_world.shape == (12, 0, 4, 4)


def test_from_arrays_casts_same_kind_losslessly_and_refuses_the_rest():
    meta, arrays, _ = synthetic_parts(renders=False)
    loose = {**arrays, "frame_numbers": arrays["frame_numbers"].astype(np.int64), "time_s": arrays["time_s"].tolist()}
    shot = Shot.from_arrays(meta, loose)
    assert shot.frame_numbers.dtype == np.int32 and shot.time_s.dtype == np.float64
    with pytest.raises(BundleError, match="'frame_numbers' has dtype float64; expected int32"):
        Shot.from_arrays(meta, {**arrays, "frame_numbers": arrays["frame_numbers"].astype(float)})
    with pytest.raises(BundleError, match="'track_visible' has dtype int64; expected bool"):
        Shot.from_arrays(meta, {**arrays, "track_visible": arrays["track_visible"].astype(int)})
    with pytest.raises(BundleError, match=r"unknown array\(s\) \['tracks'\]"):
        Shot.from_arrays(meta, {**arrays, "tracks": arrays["track_2d"]})
    with pytest.raises(BundleError, match="meta: fps: Input should be greater than 0"):
        Shot.from_arrays({**meta, "fps": -1.0}, arrays)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda m, a, f: a.update(box_2d=a["box_2d"][..., :3]),
            r"'box_2d' has shape \(12, 2, 3\); expected \(F, N, 4\)",
        ),
        (
            lambda m, a, f: a.update(time_s=a["time_s"].astype(np.float32)),
            "'time_s' has dtype float32; expected float64",
        ),
        (lambda m, a, f: a.pop("track_depth"), r"missing \['track_depth'\]"),
        (lambda m, a, f: a.update(track=a["track_2d"]), "unknown array 'track'"),
        (
            lambda m, a, f: a["camera_c2w_blender"].__setitem__((3, 0, 3), np.nan),
            "'camera_c2w_blender' holds NaN or inf",
        ),
        (lambda m, a, f: a["depth"].__setitem__((0, 0, 0), np.nan), "'depth' holds NaN; write inf for background"),
        (lambda m, a, f: a["instance_mask"].__setitem__((0, 0, 0), 3), "'instance_mask' holds id 3 > N = 2"),
        (lambda m, a, f: a.pop("depth"), r"meta\['renders'\]\['depth'\] is True but arrays lacks 'depth'"),
        (lambda m, a, f: f.update({"../evil.png": b""}), r"frames: '\.\./evil\.png' is not a safe relative"),
        (lambda m, a, f: f.update({"/abs.png": b""}), "frames: '/abs.png' is not a safe"),
        (lambda m, a, f: m.update(frames=["x.png"]), r"meta\['frames'\] is \['x.png'\]"),
        (lambda m, a, f: m.update(fps=float("nan")), "meta is not JSON-serialisable"),
        (lambda m, a, f: m.update(format_version="2.0"), "meta\\['format_version'\\] is '2.0'"),
    ],
)
def test_writer_refuses_invalid_shots_and_writes_nothing(tmp_path, change, message):
    meta, arrays, first_frame = synthetic_parts()
    frames = {"first_frame.png": png(first_frame)}
    change(meta, arrays, frames)
    with pytest.raises(BundleWriteError, match=message):
        write_bundle(tmp_path / "bad.zip", meta, arrays, frames)
    assert list(tmp_path.iterdir()) == []


def test_interrupted_write_keeps_the_old_bundle_and_leaves_no_temp_file(tmp_path, monkeypatch):
    meta, arrays, _ = synthetic_parts()
    target = tmp_path / "shot.zip"
    target.write_bytes(b"previous take")

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(np.lib.format, "write_array", interrupted)  # Ctrl-C halfway through arrays.npz
    with pytest.raises(KeyboardInterrupt):
        write_bundle(target, meta, arrays, {})
    assert target.read_bytes() == b"previous take"
    assert [p.name for p in tmp_path.iterdir()] == ["shot.zip"]


def test_default_limits_admit_a_49_frame_1280x720_bundle_with_depth_and_masks(tmp_path):
    meta, arrays, first_frame = synthetic_parts(num_frames=49, width=1280, height=720, num_entities=3)
    frames = {"first_frame.png": png(first_frame)}
    shot = load_shot(write_bundle(tmp_path / "big.zip", meta, arrays, frames))
    assert shot.depth.shape == (49, 720, 1280) and shot.instance_mask.max() == 3
