"""The shot bundle as bytes: zip layout, ``arrays.npz`` members, PNG frames; reading (untrusted) and writing.

This module knows the container; :mod:`trajplate.shot` knows what the contents mean. Layout (format 1)::

    shot.json      UTF-8 JSON, deflated
    arrays.npz     stored (not compressed twice); inside, every array a deflated (level 1) .npy member; see
                   docs/shot-bundle.md for the measurement behind this choice
    frames/<name>  stored PNGs (already compressed): ``first_frame.png``, ``rgb/<index:04d>.png`` (1-based position)

All entries carry the 1980-01-01 zip timestamp, so the same shot always gives the same bytes and bundle hash.
"""

from __future__ import annotations

import io
import math
import os
import secrets
import stat
import struct
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import cv2
import numpy as np

from .zipsafe import BundleError, BundleLimits, CheckedZip, ViewFile, open_checked_zip

META_NAME = "shot.json"
ARRAYS_NAME = "arrays.npz"
FRAMES_DIR = "frames/"
NPZ_LEVEL = 1  # real exports: 10x smaller than stored; level 6 is 4x slower to write for 20% less (bench)

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_FILE_MODE = (stat.S_IFREG | 0o644) << 16
_ZIP64_SAFE = zipfile.ZIP64_LIMIT // 2  # entries bigger than this may pass 2 GiB once headers are added


@dataclass(frozen=True)
class ExpectedArray:
    """What one array must look like: concrete ``shape``, its symbolic form for messages, and ``dtype``."""

    shape: tuple[int, ...]
    symbolic: str
    dtype: np.dtype


@dataclass
class RawBundle:
    """A bundle whose zip layout passed the checks; contents not yet interpreted."""

    archive: CheckedZip
    frame_files: list[str]  # file names under frames/, without the prefix, in archive order

    def meta_bytes(self) -> bytes:
        return bytes(self.archive.read(META_NAME))

    def arrays_buffer(self) -> memoryview | bytes:
        return self.archive.read(ARRAYS_NAME)

    def frame_bytes(self, name: str) -> bytes:
        return bytes(self.archive.read(FRAMES_DIR + name))


def read_source(source: str | os.PathLike | bytes | bytearray | memoryview | BinaryIO, limits: BundleLimits) -> bytes:
    """The bundle's bytes from a path, a bytes-like object or a binary file object (read to its end).

    Raises BundleError when the file cannot be read or is larger than ``limits.max_bundle_bytes``;
    TypeError for any other kind of ``source``.
    """
    if isinstance(source, bytes | bytearray | memoryview):
        data = bytes(source)
    elif isinstance(source, str | os.PathLike):
        try:
            size = os.stat(source).st_size
            if size > limits.max_bundle_bytes:
                raise BundleError(f"bundle: {size} bytes exceed limits.max_bundle_bytes={limits.max_bundle_bytes}")
            data = Path(source).read_bytes()
        except OSError as exc:
            raise BundleError(f"bundle: cannot read {os.fspath(source)!r} ({exc})") from exc
    elif hasattr(source, "read"):
        data = source.read(limits.max_bundle_bytes + 1)
        if not isinstance(data, bytes | bytearray):
            raise TypeError("load_shot needs a binary file object (opened with 'rb'), not a text one")
        data = bytes(data)
    else:
        raise TypeError(f"load_shot takes a path, bytes or a binary file object, not {type(source).__name__}")
    if len(data) > limits.max_bundle_bytes:
        raise BundleError(f"bundle: {len(data)} bytes exceed limits.max_bundle_bytes={limits.max_bundle_bytes}")
    return data


def open_bundle(data: bytes, limits: BundleLimits) -> RawBundle:
    """Check the bundle's zip layout: ``shot.json`` and ``arrays.npz`` present, nothing else outside ``frames/``.

    Raises BundleError naming the entry.
    """
    archive = open_checked_zip(data, limits, "")
    frame_files = []
    for name, info in archive.entries.items():
        if name.startswith(FRAMES_DIR):
            if not info.is_dir():
                frame_files.append(name[len(FRAMES_DIR) :])
        elif name not in (META_NAME, ARRAYS_NAME):
            raise BundleError(
                f"{name!r}: unknown top-level entry; a bundle holds only shot.json, arrays.npz and frames/"
            )
        elif info.is_dir():
            raise BundleError(f"{name!r}: must be a file, not a folder")
    for required in (META_NAME, ARRAYS_NAME):
        if required not in archive.entries:
            raise BundleError(f"{required}: missing from the bundle; every bundle holds shot.json and arrays.npz")
    if archive.entries[META_NAME].file_size > limits.max_meta_bytes:
        raise BundleError(f"{META_NAME}: larger than limits.max_meta_bytes={limits.max_meta_bytes}")
    return RawBundle(archive, frame_files)


def read_arrays(
    npz: memoryview | bytes, expected: Mapping[str, ExpectedArray], limits: BundleLimits, *, ignore_unknown: bool
) -> dict[str, np.ndarray]:
    """Read the arrays of ``arrays.npz``, checking each header against ``expected`` before touching its data.

    Returns native-byte-order, C-contiguous, writable arrays by name. Arrays not in ``expected`` are refused, or
    skipped when ``ignore_unknown`` (a newer minor format version may add arrays). Missing arrays are the caller's
    check. Raises BundleError naming the array.
    """
    archive = open_checked_zip(npz, limits, "arrays.npz/")
    arrays = {}
    for member, info in archive.entries.items():
        name = member.removesuffix(".npy")
        if info.is_dir() or name == member:
            raise BundleError(f"arrays.npz: entry {member!r} is not an .npy array")
        if name not in expected:
            if ignore_unknown:
                continue
            raise BundleError(f"arrays.npz: unknown array {name!r}; known arrays: {', '.join(expected)}")
        arrays[name] = _read_npy(archive.read(member), name, expected[name])
    return arrays


def _read_npy(buffer: memoryview | bytes, name: str, expected: ExpectedArray) -> np.ndarray:
    where = f"arrays.npz: {name!r}"
    header = ViewFile(buffer)
    try:
        version = np.lib.format.read_magic(header)
        if version == (1, 0):
            shape, fortran_order, dtype = np.lib.format.read_array_header_1_0(header)
        elif version == (2, 0):
            shape, fortran_order, dtype = np.lib.format.read_array_header_2_0(header)
        else:
            raise BundleError(f"{where}: .npy format version {version} is not supported; write 1.0 or 2.0")
    except BundleError:
        raise
    except Exception as exc:  # numpy raises ValueError, OSError, SyntaxError... on a mangled header
        raise BundleError(f"{where}: unreadable .npy header ({exc})") from exc
    if dtype.hasobject:
        raise BundleError(f"{where}: holds Python objects (pickle); only plain numeric arrays are allowed")
    want = expected.dtype
    if (
        dtype.fields is not None
        or dtype.subdtype is not None
        or (dtype.kind, dtype.itemsize) != (want.kind, want.itemsize)
    ):
        raise BundleError(f"{where} has dtype {dtype}; expected {want}")
    if tuple(shape) != expected.shape:
        raise BundleError(f"{where} has shape {tuple(shape)}; expected {expected.symbolic} = {expected.shape}")
    start = header.tell()
    size = math.prod(shape) * dtype.itemsize
    if len(buffer) - start != size:
        raise BundleError(f"{where}: holds {len(buffer) - start} data bytes; its header says {size}")
    array = np.frombuffer(buffer, dtype=dtype, count=math.prod(shape), offset=start)
    array = array.reshape(shape[::-1]).T if fortran_order else array.reshape(shape)
    # One copy: native byte order, C order, and an array that owns its memory rather than pinning the upload.
    return array.astype(dtype.newbyteorder("="), order="C", copy=True)


def decode_png(data: bytes, width: int, height: int, where: str) -> np.ndarray:
    """Decode a PNG of the shot's size to (H, W, 3) uint8 RGB (alpha dropped, 16-bit reduced to 8-bit).

    The size is read from the PNG header and checked before decoding, so a hostile PNG cannot claim a huge image.
    Raises BundleError naming ``where``.
    """
    data = bytes(data)
    if len(data) < 24 or data[:8] != _PNG_SIGNATURE or data[12:16] != b"IHDR":
        raise BundleError(f"{where}: not a PNG file")
    png_width, png_height = struct.unpack(">II", data[16:24])
    if (png_width, png_height) != (width, height):
        raise BundleError(f"{where}: image is {png_width}x{png_height}; expected the shot resolution {width}x{height}")
    try:
        bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    except cv2.error as exc:
        raise BundleError(f"{where}: corrupt PNG ({exc})") from exc
    if bgr is None or bgr.shape != (height, width, 3):
        raise BundleError(f"{where}: corrupt PNG")
    return np.ascontiguousarray(bgr[..., ::-1])


def encode_png(rgb: np.ndarray) -> bytes:
    """Encode (H, W, 3) uint8 RGB as PNG bytes."""
    ok, png = cv2.imencode(".png", np.ascontiguousarray(rgb[..., ::-1]))
    if not ok:
        raise ValueError("OpenCV could not encode the image as PNG")
    return png.tobytes()


def _info(name: str, compress_type: int) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)  # default timestamp 1980-01-01: identical shots give identical bytes
    info.compress_type = compress_type
    info.external_attr = _FILE_MODE
    return info


def write_bundle_file(
    path: str | os.PathLike, meta_json: bytes, arrays: Mapping[str, np.ndarray], frames: Mapping[str, bytes]
) -> Path:
    """Write a bundle atomically (temp file in the same folder, then ``os.replace``); returns the path.

    ``meta_json``: the UTF-8 shot.json; ``arrays``: validated arrays by name; ``frames``: file bytes by name under
    ``frames/``. The temp file is removed on any error, KeyboardInterrupt included.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")  # same folder: os.replace stays atomic
    try:
        with open(tmp, "xb") as file:  # unlike mkstemp's 0600, honours the umask like any other export
            with zipfile.ZipFile(file, "w") as bundle:
                bundle.writestr(_info(META_NAME, zipfile.ZIP_DEFLATED), meta_json)
                big = sum(a.nbytes for a in arrays.values()) > _ZIP64_SAFE
                with bundle.open(_info(ARRAYS_NAME, zipfile.ZIP_STORED), "w", force_zip64=big) as raw:
                    _write_npz(raw, arrays)
                for name, data in frames.items():
                    bundle.writestr(_info(FRAMES_DIR + name, zipfile.ZIP_STORED), data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def _write_npz(stream: BinaryIO, arrays: Mapping[str, np.ndarray]) -> None:
    with zipfile.ZipFile(stream, "w") as npz:
        for name, array in arrays.items():
            npy = io.BytesIO()
            np.lib.format.write_array(npy, np.ascontiguousarray(array), allow_pickle=False)
            npz.writestr(_info(f"{name}.npy", zipfile.ZIP_DEFLATED), npy.getbuffer(), compresslevel=NPZ_LEVEL)
