"""load_shot refuses every malformed or hostile bundle with a BundleError naming the entry or field.

Bundles here are assembled by hand with zipfile and numpy (not by our writers), so they can be wrong in every way
a third-party exporter or an attacker could make them.
"""

from __future__ import annotations

import io
import json
import stat
import zipfile

import numpy as np
import pytest
from support.synthetic import png, synthetic_parts
from trajplate.shot import BundleError, BundleLimits, load_shot


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as npz:
        for name, array in arrays.items():
            with npz.open(f"{name}.npy", "w") as member:
                np.lib.format.write_array(member, np.asanyarray(array), allow_pickle=True)
    return buffer.getvalue()


def zip_bytes(entries: list[tuple[str | zipfile.ZipInfo, bytes]], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", method) as archive:
        for name, data in entries:
            archive.writestr(name, data)
    return buffer.getvalue()


def parts():
    meta, arrays, first_frame = synthetic_parts()
    meta["frames"] = ["first_frame.png"]
    return meta, arrays, {"first_frame.png": png(first_frame)}


def bundle(meta: dict, arrays: dict, frames: dict, extra: list | None = None) -> bytes:
    entries = [("shot.json", json.dumps(meta).encode()), ("arrays.npz", npz_bytes(arrays))]
    entries += [("frames/" + name, data) for name, data in frames.items()]
    return zip_bytes(entries + (extra or []))


def refused(data: bytes, *fragments: str, limits: BundleLimits | None = None) -> str:
    with pytest.raises(BundleError) as caught:
        load_shot(data, limits=limits or BundleLimits())
    message = str(caught.value)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    return message


def test_hand_built_bundle_is_accepted():
    shot = load_shot(bundle(*parts()))
    assert shot.first_frame.shape == (64, 96, 3)


@pytest.mark.parametrize(
    "data", [b"", b"not a zip at all", png(np.zeros((4, 4, 3), np.uint8)), b"PK\x05\x06" + 18 * b"\0"]
)
def test_non_zip_input(data):
    refused(data, "bundle")


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("/etc/passwd", "absolute"),
        ("C:/Windows/evil.dll", "absolute"),
        ("frames/../../evil.sh", "'..'"),
        ("../shot.json", "'..'"),
        ("frames//double.png", "empty"),
        ("frames\\first_frame.png", "backslash"),
    ],
)
def test_entries_that_escape_the_archive(name, fragment):
    meta, arrays, frames = parts()
    refused(bundle(meta, arrays, frames, [(name, b"x")]), repr(name), fragment)


def test_symlink_entry():
    meta, arrays, frames = parts()
    link = zipfile.ZipInfo("frames/first_frame.png")
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    entries = [("shot.json", json.dumps(meta).encode()), ("arrays.npz", npz_bytes(arrays)), (link, b"/etc/passwd")]
    refused(zip_bytes(entries), "frames/first_frame.png", "symlink")


def test_duplicate_entry_names():
    meta, arrays, frames = parts()
    with pytest.warns(UserWarning, match="Duplicate name"):
        data = bundle(meta, arrays, frames, [("shot.json", b"{}")])
    refused(data, "'shot.json'", "duplicate")


def test_unknown_and_missing_top_level_entries():
    meta, arrays, frames = parts()
    refused(bundle(meta, arrays, frames, [("run_me.py", b"import os")]), "'run_me.py'", "unknown top-level entry")
    refused(bundle(meta, arrays, frames, [("arrays.npz/", b"")]), "'arrays.npz/'", "unknown top-level entry")
    entries = [("shot.json", json.dumps(meta).encode())]
    refused(zip_bytes(entries), "arrays.npz", "missing")


def test_encrypted_and_exotic_compression_are_refused():
    meta, arrays, frames = parts()
    good = bundle(meta, arrays, frames)
    entries = [("shot.json", json.dumps(meta).encode()), ("arrays.npz", npz_bytes(arrays))]
    refused(zip_bytes(entries, zipfile.ZIP_BZIP2), "'shot.json'", "compression method 12")
    encrypted = bytearray(good)
    offset = encrypted.find(b"PK\x01\x02")  # first central directory record: set the "encrypted" flag bit
    encrypted[offset + 8] |= 0x1
    refused(bytes(encrypted), "'shot.json'", "encrypted")


def test_decompression_bombs_are_refused_before_inflating():
    meta, arrays, frames = parts()
    zeros = bytes(70 << 20)  # deflates ~1000x: past the default grace size and ratio
    refused(bundle(meta, arrays, frames, [("frames/rgb/0001.png", zeros)]), "compression ratio", "max_ratio")
    refused(
        bundle(meta, arrays, frames, [("frames/rgb/0001.png", bytes(2 << 20))]),
        "max_uncompressed_bytes",
        limits=BundleLimits(max_uncompressed_bytes=1 << 20),
    )
    nested = {**arrays, "depth": np.zeros((12, 4000, 400), np.float32)}  # inside arrays.npz: checked there too
    refused(bundle(meta, nested, frames), "arrays.npz/", "compression ratio")
    small = bundle(meta, arrays, frames)
    refused(small, "max_bundle_bytes", limits=BundleLimits(max_bundle_bytes=len(small) - 1))
    refused(small, "max_entries", limits=BundleLimits(max_entries=2))


def test_pickled_object_in_npz():
    meta, arrays, frames = parts()
    evil = np.empty(arrays["track_depth"].shape, dtype=object)
    refused(bundle(meta, {**arrays, "track_depth": evil}, frames), "'track_depth'", "pickle")


def test_format_versions():
    meta, arrays, frames = parts()
    message = refused(bundle({**meta, "format_version": "2.0", "fps": "bad"}, arrays, frames), "format_version")
    assert "fps" not in message  # an unknown major version is the only complaint
    refused(bundle({**meta, "format_version": "one"}, arrays, frames), "format_version")
    # Same minor: unknown arrays are refused; newer minor: unknown keys, arrays and frames are ignored.
    extra_array = {**arrays, "optical_flow": np.zeros(3)}
    refused(bundle(meta, extra_array, frames), "unknown array 'optical_flow'")
    newer = {**meta, "format_version": "1.9", "lens_distortion": {"k1": 0.1}, "frames": [*meta["frames"], "flow.exr"]}
    shot = load_shot(bundle(newer, extra_array, {**frames, "flow.exr": b"\0"}))
    assert shot.meta.format_version == "1.9" and shot.meta.model_extra == {"lens_distortion": {"k1": 0.1}}


def test_missing_array_and_shape_and_dtype_mismatches():
    meta, arrays, frames = parts()
    refused(bundle(meta, {k: v for k, v in arrays.items() if k != "box_2d"}, frames), "missing ['box_2d']")
    message = refused(bundle(meta, {**arrays, "box_2d": arrays["box_2d"][..., :3]}, frames))
    assert message == "arrays.npz: 'box_2d' has shape (12, 2, 3); expected (F, N, 4) = (12, 2, 4)"
    refused(bundle(meta, {**arrays, "depth": arrays["depth"][:, :, :-1]}, frames), "'depth' has shape (12, 64, 95)")
    refused(
        bundle(meta, {**arrays, "frame_numbers": arrays["frame_numbers"].astype(np.int64)}, frames),
        "'frame_numbers' has dtype int64; expected int32",
    )
    structured = np.zeros(arrays["track_depth"].shape, dtype=[("z", "<f8")])
    refused(bundle(meta, {**arrays, "track_depth": structured}, frames), "'track_depth' has dtype")


def test_big_endian_and_fortran_order_arrays_are_read_correctly():
    meta, arrays, frames = parts()
    foreign = {
        **arrays,
        "intrinsics": arrays["intrinsics"].astype(">f8"),
        "box_2d": np.asfortranarray(arrays["box_2d"]),
    }
    shot = load_shot(bundle(meta, foreign, frames))
    assert shot.intrinsics.dtype == np.float64 and shot.intrinsics.dtype.isnative
    np.testing.assert_array_equal(shot.intrinsics, arrays["intrinsics"])
    np.testing.assert_array_equal(shot.box_2d, arrays["box_2d"])


@pytest.mark.parametrize(
    ("name", "index", "value", "fragment"),
    [
        ("camera_c2w_blender", (2, 0, 3), np.nan, "'camera_c2w_blender' holds NaN or inf at (2, 0, 3)"),
        ("camera_w2c_opencv", (0, 1, 1), np.inf, "'camera_w2c_opencv' holds NaN or inf"),
        ("entity_world", (1, 1, 0, 0), -np.inf, "'entity_world' holds NaN or inf"),
        ("intrinsics", (0, 0, 0), np.nan, "'intrinsics' holds NaN or inf"),
        ("entity_quaternion_wxyz", (0, 0, 0), np.nan, "'entity_quaternion_wxyz'"),
        ("depth", (3, 10, 20), np.nan, "'depth' holds NaN at (frame, y, x) (3, 10, 20)"),
        ("depth", (3, 10, 20), -np.inf, "'depth' holds a value <= 0"),
        ("instance_mask", (5, 1, 2), 3, "'instance_mask' holds id 3"),
        ("intrinsics", (0, 2, 2), 2.0, "'intrinsics' at frame index 0"),
        ("entity_position", (4, 1, 2), 9.0, "'entity_position' at (4, 1)"),
        ("camera_c2w_blender", (6, 0, 0), 2.0, "'camera_c2w_blender' rotation at (6,)"),
    ],
)
def test_bad_values(name, index, value, fragment):
    meta, arrays, frames = parts()
    arrays[name] = arrays[name].copy()
    arrays[name][index] = value
    refused(bundle(meta, arrays, frames), fragment)


def test_depth_may_hold_inf_background():
    meta, arrays, frames = parts()
    assert np.isposinf(arrays["depth"]).any()
    assert np.isposinf(load_shot(bundle(meta, arrays, frames)).depth).any()


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        (lambda m: m["entities"][1].update(id=3), "entities ids are [1, 3]; expected 1..N"),
        (lambda m: m["entities"][0].update(color=[255, 0, 300]), "entities.0.color.2"),
        (lambda m: m["entities"][0].update(up_axis="-Y"), "forward_axis -Y and up_axis -Y"),
        (lambda m: m.update(frame_count=11), "frame_count is 11"),
        (lambda m: m.update(resolution=[96, 64, 3]), "resolution"),
        (lambda m: m.update(fps=0), "fps"),
        (lambda m: m.update(fps="24"), "fps: Input should be a valid number"),
        (lambda m: m.pop("camera_settings"), "camera_settings: Field required"),
        (lambda m: m["camera_settings"].update(type="ORTHO"), "camera_settings.type"),
        (lambda m: m.update(cameras=["Camera"]), "cameras has 1 names"),
        (lambda m: m.update(frames=["first_frame.png", "../x.png"]), "'..'"),
        (lambda m: m["renders"].update(depth=False), "renders.depth is false but arrays.npz holds 'depth'"),
    ],
)
def test_bad_meta(change, fragment):
    meta, arrays, frames = parts()
    change(meta)
    message = refused(bundle(meta, arrays, frames), fragment)
    assert message.startswith("shot.json: ") or message.startswith("frames"), message


def test_mask_ids_beyond_the_entities_listed():
    meta, arrays, frames = parts()
    meta["entities"] = meta["entities"][:1]  # two entities in the arrays, one in shot.json
    refused(bundle(meta, arrays, frames), "arrays.npz: 'entity_world' has shape (12, 2, 4, 4); expected (F, N, 4, 4)")


@pytest.mark.parametrize("text", [b"{not json", b"[1, 2]", b"\xff\xfe", b'{"fps": NaN}', b"[" * 100000 + b"]" * 100000])
def test_unparseable_shot_json(text):
    meta, arrays, frames = parts()
    entries = [("shot.json", text), ("arrays.npz", npz_bytes(arrays))]
    refused(zip_bytes(entries), "shot.json")


def test_frames_listing_and_png_checks():
    meta, arrays, frames = parts()
    refused(bundle({**meta, "frames": []}, arrays, frames), "frames/first_frame.png", "not listed")
    refused(bundle(meta, arrays, {}), "frames/first_frame.png", "missing from the bundle")
    refused(bundle(meta, arrays, {"first_frame.png": b"GIF89a"}), "frames/first_frame.png: not a PNG")
    wrong = png(np.zeros((64, 95, 3), np.uint8))
    refused(bundle(meta, arrays, {"first_frame.png": wrong}), "image is 95x64; expected the shot resolution 96x64")
    broken = frames["first_frame.png"][:40] + bytes(200)
    refused(bundle(meta, arrays, {"first_frame.png": broken}), "frames/first_frame.png: corrupt PNG")
    refused(bundle({**meta, "frames": ["first_frame.png", "rgb/0001.png"]}, arrays, frames), "rgb/ renders")
