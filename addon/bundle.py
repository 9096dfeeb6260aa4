"""Shot -> shot bundle (.zip) writer: the add-on side of the shot-bundle contract (format 1.0).

NumPy and the standard library only (no bpy): it runs inside Blender's Python and in plain tests. The reader is
``trajplate.shot`` in the backend; the two never import each other, each keeps its own copy of the format table,
and ``tests/test_contract.py`` proves they agree. Format documentation: ``docs/shot-bundle.md``.

Layout::

    shot.json      UTF-8 JSON (the ``meta`` dict), deflated
    arrays.npz     stored in the zip (not compressed twice); inside, one deflated (level 1) .npy member per array:
                   the upload shrinks ~10x on real exports (masks ~400x, depth ~9x) for a little more read time
                   (measured with bench/bundle.py; see docs/shot-bundle.md)
    frames/<name>  stored PNGs: ``first_frame.png``, ``rgb/<frame:04d>.png``

Every entry carries the 1980-01-01 zip timestamp, so identical shots give identical bytes (and bundle hashes).
"""

from __future__ import annotations

import io
import json
import os
import re
import secrets
import stat
import zipfile
from pathlib import Path

import numpy as np

FORMAT_VERSION = "1.0"

# name -> (symbolic shape, dtype); F frames, N entities, H x W pixels. Mirrors trajplate.shot.ARRAY_SPECS.
ARRAY_SPECS = {
    "frame_numbers": (("F",), "int32"),
    "time_s": (("F",), "float64"),
    "camera_c2w_blender": (("F", 4, 4), "float64"),
    "camera_w2c_opencv": (("F", 4, 4), "float64"),
    "intrinsics": (("F", 3, 3), "float64"),
    "entity_world": (("F", "N", 4, 4), "float64"),
    "entity_position": (("F", "N", 3), "float64"),
    "entity_quaternion_wxyz": (("F", "N", 4), "float64"),
    "entity_cam_opencv": (("F", "N", 4, 4), "float64"),
    "track_2d": (("F", "N", 2), "float64"),
    "track_depth": (("F", "N"), "float64"),
    "track_in_frame": (("F", "N"), "bool"),
    "track_visible": (("F", "N"), "bool"),
    "box_2d": (("F", "N", 4), "float64"),
    "box_2d_valid": (("F", "N"), "bool"),
    "box_3d_world": (("F", "N", 8, 3), "float64"),
    "depth": (("F", "H", "W"), "float32"),
    "instance_mask": (("F", "H", "W"), "uint8"),
}
OPTIONAL_ARRAYS = ("depth", "instance_mask")
NPZ_LEVEL = 1  # real exports: 10x smaller than stored; level 6 is 4x slower to write for 20% less (bench)

_FILE_MODE = (stat.S_IFREG | 0o644) << 16
_ZIP64_SAFE = zipfile.ZIP64_LIMIT // 2  # entries above this might pass 2 GiB with headers: write them as zip64
_BAD_NAME = re.compile(r"(^|/)\.{0,2}(/|$)|^/|\\|\x00|^[A-Za-z]:")


class BundleWriteError(ValueError):
    """The shot cannot be written as a valid bundle; the message names the field or array and the fix."""


def write_bundle(path, meta: dict, arrays: dict, frames: dict) -> Path:
    """Write a shot bundle to ``path`` atomically and return it as a Path.

    meta: the shot.json dict (docs/shot-bundle.md); ``format_version`` and ``frames`` are filled in when absent.
      F = meta["frame_count"], N = len(meta["entities"]), [W, H] = meta["resolution"].
    arrays: name -> ndarray, exactly the contract table (ARRAY_SPECS): e.g. camera_w2c_opencv (F, 4, 4) float64,
      world-to-camera, OpenCV axes, metres; depth (F, H, W) float32 planar z, inf background (optional).
    frames: file name under frames/ -> PNG bytes, e.g. {"first_frame.png": ..., "rgb/0001.png": ...}.

    Everything is validated before a byte is written (unknown, missing, mis-shaped or mis-typed arrays, NaN/inf in
    poses, NaN in depth, mask ids > N, unsafe frame names, meta that is not JSON); the file appears complete or not
    at all: a temp file in the same folder is renamed over ``path`` and removed on any error, Ctrl-C included.
    Raises BundleWriteError naming the field; OSError when the folder cannot be written.
    """
    meta = _checked_meta(meta, arrays, frames)
    meta_json = _to_json(meta)
    sizes = _sizes(meta)
    missing = [name for name in ARRAY_SPECS if name not in arrays and name not in OPTIONAL_ARRAYS]
    if missing:
        raise BundleWriteError(f"arrays: missing {missing}; every bundle needs all arrays except {OPTIONAL_ARRAYS}")
    for name, array in arrays.items():
        _check_array(name, array, sizes)
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")  # same folder: os.replace stays atomic
    try:
        with open(tmp, "xb") as file:  # unlike mkstemp's 0600, honours the umask like any other export
            with zipfile.ZipFile(file, "w") as bundle:
                bundle.writestr(_info("shot.json", zipfile.ZIP_DEFLATED), meta_json)
                big = sum(array.nbytes for array in arrays.values()) > _ZIP64_SAFE
                with bundle.open(_info("arrays.npz", zipfile.ZIP_STORED), "w", force_zip64=big) as raw:
                    _write_npz(raw, {name: arrays[name] for name in ARRAY_SPECS if name in arrays})
                for name in sorted(frames):
                    bundle.writestr(_info("frames/" + name, zipfile.ZIP_STORED), bytes(frames[name]))
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def _checked_meta(meta, arrays, frames) -> dict:
    if not isinstance(meta, dict):
        raise BundleWriteError(f"meta must be a dict (the shot.json content), not {type(meta).__name__}")
    meta = dict(meta)
    version = meta.setdefault("format_version", FORMAT_VERSION)
    if version != FORMAT_VERSION:
        raise BundleWriteError(f"meta['format_version'] is {version!r}; this writer writes {FORMAT_VERSION!r}")
    for name, data in frames.items():
        if not isinstance(name, str) or _BAD_NAME.search(name):
            raise BundleWriteError(f"frames: {name!r} is not a safe relative file name like 'rgb/0001.png'")
        if not isinstance(data, bytes | bytearray | memoryview):
            raise BundleWriteError(f"frames[{name!r}] must be the file's bytes, not {type(data).__name__}")
    listed = meta.setdefault("frames", sorted(frames))
    if not isinstance(listed, list) or sorted(listed) != sorted(frames):
        raise BundleWriteError(f"meta['frames'] is {listed!r} but the frames given are {sorted(frames)}; drop the key")
    renders = meta.get("renders", {})
    for name in OPTIONAL_ARRAYS:
        if isinstance(renders, dict) and name in renders and bool(renders[name]) != (name in arrays):
            raise BundleWriteError(
                f"meta['renders'][{name!r}] is {renders[name]} but arrays {'has' if name in arrays else 'lacks'} "
                f"{name!r}; make them agree"
            )
    return meta


def _to_json(meta: dict) -> bytes:
    try:
        return json.dumps(meta, allow_nan=False, ensure_ascii=False, indent=1).encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise BundleWriteError(
            f"meta is not JSON-serialisable: {exc} (convert numpy values with float()/int())"
        ) from exc


def _sizes(meta: dict) -> dict:
    try:
        width, height = (int(v) for v in meta["resolution"])
        sizes = {"F": int(meta["frame_count"]), "N": len(meta["entities"]), "H": height, "W": width}
    except (KeyError, TypeError, ValueError) as exc:
        raise BundleWriteError(
            f"meta needs 'frame_count' (int), 'resolution' ([W, H] ints) and 'entities' (list): {exc!r}"
        ) from exc
    return sizes


def _check_array(name: str, array, sizes: dict) -> None:
    if name not in ARRAY_SPECS:
        raise BundleWriteError(f"arrays: unknown array {name!r}; known arrays: {', '.join(ARRAY_SPECS)}")
    symbols, dtype = ARRAY_SPECS[name]
    shape = tuple(sizes[s] if isinstance(s, str) else s for s in symbols)
    if not isinstance(array, np.ndarray) or array.dtype != np.dtype(dtype):
        raise BundleWriteError(
            f"arrays: {name!r} has dtype {getattr(array, 'dtype', type(array).__name__)}; expected {dtype}"
        )
    if array.shape != shape:
        symbolic = "(" + ", ".join(map(str, symbols)) + ")"
        raise BundleWriteError(f"arrays: {name!r} has shape {array.shape}; expected {symbolic} = {shape}")
    if dtype == "float64" and not np.isfinite(array).all():
        raise BundleWriteError(f"arrays: {name!r} holds NaN or inf; poses, tracks and boxes must be finite")
    if name == "depth" and np.isnan(array).any():
        raise BundleWriteError("arrays: 'depth' holds NaN; write inf for background")
    if name == "instance_mask" and array.size and array.max() > sizes["N"]:
        raise BundleWriteError(f"arrays: 'instance_mask' holds id {array.max()} > N = {sizes['N']} entities")


def _info(name: str, compress_type: int) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)  # default 1980-01-01 timestamp keeps bundles reproducible
    info.compress_type = compress_type
    info.external_attr = _FILE_MODE
    return info


def _write_npz(stream, arrays: dict) -> None:
    with zipfile.ZipFile(stream, "w") as npz:
        for name, array in arrays.items():
            npy = io.BytesIO()
            np.lib.format.write_array(npy, np.ascontiguousarray(array), allow_pickle=False)
            npz.writestr(_info(name + ".npy", zipfile.ZIP_DEFLATED), npy.getbuffer(), compresslevel=NPZ_LEVEL)
