"""Opening untrusted zip archives (shot bundles and the ``arrays.npz`` inside them) safely.

The job service feeds uploads straight into :func:`trajplate.shot.load_shot`, so every archive level is checked
before a byte is inflated: entry names (no absolute paths, ``..``, backslashes, NUL), entry types (no symlinks or
devices), duplicates, compression methods (stored or deflate only, no encryption), entry count, total declared size
and compression ratio. ``zipfile`` never inflates an entry past its declared size and checks its CRC, so the declared
sizes bound memory and time. Every failure is a :class:`BundleError` naming the entry.
"""

from __future__ import annotations

import io
import re
import stat
import struct
import zipfile
import zlib
from dataclasses import dataclass


class BundleError(ValueError):
    """A shot bundle is malformed or unsafe; the message names the entry or field and, where possible, the fix."""


@dataclass(frozen=True)
class BundleLimits:
    """Resource limits for reading an untrusted bundle; the defaults admit a 49-frame 1280x720 bundle with depth,
    instance masks and per-frame renders (about 230 MB of arrays) with room to spare.

    Sizes are bytes. ``max_uncompressed_bytes``, ``max_entries`` and ``max_ratio`` apply to each archive level
    separately (the bundle, then the ``arrays.npz`` inside it). The ratio (declared uncompressed / compressed size
    of the whole archive) is only checked once the archive declares more than ``ratio_grace_bytes``, so small
    bundles of very regular data (an all-zero mask of a camera-only shot) are not refused.
    """

    max_bundle_bytes: int = 1 << 30
    max_uncompressed_bytes: int = 512 << 20
    max_entries: int = 4096
    max_ratio: float = 200.0
    ratio_grace_bytes: int = 64 << 20
    max_meta_bytes: int = 16 << 20


# Local file header: signature, version, flags, method, time, date, CRC, sizes, name and extra lengths (30 bytes).
_LOCAL_HEADER = struct.Struct("<4sHHHHHLLLHH")
_ABSOLUTE = re.compile(r"^(/|[A-Za-z]:)")
_ALLOWED_TYPES = (0, stat.S_IFREG, stat.S_IFDIR)  # 0: no Unix mode recorded (zips made on Windows)


def check_entry_name(name: str, where: str) -> None:
    """Refuse an archive member name that could escape an extraction folder; ``where`` prefixes the message."""
    if "\x00" in name or "\\" in name:
        raise BundleError(f"{where}{name!r}: entry names may not contain NUL or backslashes; use '/' separators")
    if _ABSOLUTE.match(name):
        raise BundleError(f"{where}{name!r}: absolute paths are not allowed in a bundle; use a relative name")
    parts = name[:-1].split("/") if name.endswith("/") else name.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise BundleError(f"{where}{name!r}: empty, '.' or '..' path components escape the archive; not allowed")


class ViewFile(io.RawIOBase):
    """A read-only, seekable file over a buffer, without copying it (``io.BytesIO`` copies memoryviews)."""

    def __init__(self, buffer: bytes | memoryview):
        self._view = memoryview(buffer)
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, target) -> int:
        count = max(0, min(len(target), len(self._view) - self._pos))
        target[:count] = self._view[self._pos : self._pos + count]
        self._pos += count
        return count

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: len(self._view)}[whence]
        if base + offset < 0:
            raise OSError("seek before the start of the buffer")
        self._pos = base + offset
        return self._pos

    def tell(self) -> int:
        return self._pos


class CheckedZip:
    """A zip archive whose entries all passed the checks of :func:`open_checked_zip`.

    ``entries`` maps entry names to ``ZipInfo`` in archive order. ``where`` prefixes every message.
    """

    def __init__(self, view: memoryview, entries: dict[str, zipfile.ZipInfo], where: str):
        self._view = view
        self.entries = entries
        self.where = where

    def read(self, name: str) -> memoryview | bytes:
        """The entry's data, size- and CRC-checked: a zero-copy view for stored entries, bytes for deflated ones.

        Inflating stops at the declared size, which the limits bounded. Raises BundleError when the entry is corrupt.
        """
        info = self.entries[name]
        span = self._data_span(info)
        if info.compress_type == zipfile.ZIP_STORED:
            data = span
        else:
            inflater = zlib.decompressobj(-zlib.MAX_WBITS)
            try:
                data = inflater.decompress(span, info.file_size)
                # Finish the stream: the end-of-stream marker may still be pending; any further output is excess.
                excess = b"" if inflater.eof else inflater.decompress(inflater.unconsumed_tail, 1)
            except zlib.error as exc:
                raise BundleError(f"{self.where}{name}: corrupt deflate data ({exc})") from exc
            if excess or not inflater.eof:
                raise BundleError(f"{self.where}{name}: deflate stream does not end at the declared size")
        if len(data) != info.file_size:
            raise BundleError(f"{self.where}{name}: data size {len(data)} differs from declared {info.file_size}")
        if zlib.crc32(data) != info.CRC:
            raise BundleError(f"{self.where}{name}: CRC mismatch; the archive is damaged")
        return data

    def _data_span(self, info: zipfile.ZipInfo) -> memoryview:
        start = info.header_offset
        header = self._view[start : start + _LOCAL_HEADER.size]
        if len(header) != _LOCAL_HEADER.size:
            raise BundleError(f"{self.where}{info.orig_filename}: local header is truncated")
        signature, flags, name_length, extra_length = (_LOCAL_HEADER.unpack(header)[i] for i in (0, 2, 9, 10))
        if signature != b"PK\x03\x04":
            raise BundleError(f"{self.where}{info.orig_filename}: bad local header signature")
        name_start = start + _LOCAL_HEADER.size
        name_end = name_start + name_length
        raw_name = bytes(self._view[name_start:name_end])
        try:
            local_name = raw_name.decode("utf-8" if flags & 0x800 else "cp437")
        except UnicodeDecodeError as exc:
            raise BundleError(f"{self.where}{info.orig_filename}: undecodable local file name") from exc
        if local_name != info.orig_filename:
            raise BundleError(f"{self.where}{info.orig_filename}: local header names {local_name!r}; archive damaged")
        data_start = name_end + extra_length
        span = self._view[data_start : data_start + info.compress_size]
        if len(span) != info.compress_size:
            raise BundleError(f"{self.where}{info.orig_filename}: data runs past the end of the archive")
        return span


def open_checked_zip(data: bytes | memoryview, limits: BundleLimits, where: str) -> CheckedZip:
    """Open ``data`` (the archive's bytes) as a zip archive and check every entry against ``limits``.

    ``where`` ("" for the bundle, "arrays.npz/" inside it) prefixes every message.
    Raises BundleError when the data is not a zip or any entry is unsafe.
    """
    label = where or "bundle: "
    view = memoryview(data).cast("B")
    try:
        archive = zipfile.ZipFile(ViewFile(view))
        infos = archive.infolist()
    except MemoryError:
        raise
    except Exception as exc:  # zipfile raises a zoo of types on hostile input; all mean "not a readable zip"
        raise BundleError(f"{where.rstrip('/') or 'bundle'}: not a readable zip archive ({exc})") from exc
    if len(infos) > limits.max_entries:
        raise BundleError(f"{label}{len(infos)} entries exceed limits.max_entries={limits.max_entries}")
    entries: dict[str, zipfile.ZipInfo] = {}
    total = 0
    for info in infos:
        name = info.orig_filename
        check_entry_name(name, where)
        if name in entries:
            raise BundleError(f"{where}{name!r}: duplicate entry name; each file may appear once")
        file_type = stat.S_IFMT(info.external_attr >> 16)
        if file_type not in _ALLOWED_TYPES:
            kind = "a symlink" if file_type == stat.S_IFLNK else "a special file"
            raise BundleError(f"{where}{name!r}: entry is {kind}; bundles hold regular files only")
        if info.flag_bits & 0x1:
            raise BundleError(f"{where}{name!r}: entry is encrypted; bundles are not encrypted")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise BundleError(
                f"{where}{name!r}: compression method {info.compress_type} is not allowed; use stored or deflate"
            )
        total += info.file_size
        entries[name] = info
    if total > limits.max_uncompressed_bytes:
        raise BundleError(
            f"{label}entries declare {total} bytes uncompressed, over "
            f"limits.max_uncompressed_bytes={limits.max_uncompressed_bytes}"
        )
    if total > limits.ratio_grace_bytes and total > limits.max_ratio * max(len(data), 1):
        raise BundleError(
            f"{label}compression ratio {total / max(len(data), 1):.0f} exceeds "
            f"limits.max_ratio={limits.max_ratio:g} (possible decompression bomb)"
        )
    return CheckedZip(view, entries, where)
