"""Reader for the uncompressed scanline OpenEXR files the data-pass render writes (NumPy + stdlib, no bpy).

Blender's Python has no OpenEXR module and cannot read multilayer EXR pixels in background mode, so the export
writes its data passes with ``exr_codec='NONE'`` and reads them here. Handles the single-part layout of Blender
4.x and the multi-part layout of 5.0 (one part per pass); anything else raises ValueError naming what is unsupported.
"""

import struct

import numpy as np

_MAGIC = 20000630
_MULTIPART = 0x1000
_TILED = 0x200
_PIXEL_DTYPES = {0: np.dtype("<u4"), 1: np.dtype("<f2"), 2: np.dtype("<f4")}


def _cstring(buf, pos):
    end = buf.index(b"\0", pos)
    return buf[pos:end].decode("utf-8"), end + 1


def _channels(value):
    out, pos = [], 0
    while value[pos] != 0:
        name, pos = _cstring(value, pos)
        pixel_type, _linear, x_sampling, y_sampling = struct.unpack_from("<iB3xii", value, pos)
        pos += 16
        if (x_sampling, y_sampling) != (1, 1):
            raise ValueError(f"EXR channel {name!r} is subsampled; only full-resolution channels are supported")
        out.append((name, _PIXEL_DTYPES[pixel_type]))
    return out


def _header(buf, pos):
    attrs = {}
    while buf[pos] != 0:
        name, pos = _cstring(buf, pos)
        kind, pos = _cstring(buf, pos)
        (size,) = struct.unpack_from("<i", buf, pos)
        pos += 4
        attrs[name] = (kind, buf[pos:pos + size])
        pos += size
    return attrs, pos + 1


def read_exr(data):
    """Channels of an uncompressed scanline EXR.

    data: the file's bytes. Returns {full channel name: (H, W) array} with rows from the top of the image; float
    channels as float32 (half widened), uint channels as uint32. In multi-part files each channel name is prefixed
    with its part name unless it already carries it ("ViewLayer.Depth" + "Z" -> "ViewLayer.Depth.Z").
    Raises ValueError for compressed, tiled or deep files.
    """
    magic, version = struct.unpack_from("<ii", data, 0)
    if magic != _MAGIC:
        raise ValueError("not an OpenEXR file")
    if version & _TILED:
        raise ValueError("tiled EXR files are not supported")
    multipart = bool(version & _MULTIPART)
    pos, headers = 8, []
    while True:
        attrs, pos = _header(data, pos)
        headers.append(attrs)
        if not multipart or data[pos] == 0:
            break
    pos += 1 if multipart else 0
    out = {}
    for attrs in headers:
        if attrs["compression"][1][0] != 0:
            raise ValueError("compressed EXR files are not supported: render with exr_codec='NONE'")
        x0, y0, x1, y1 = struct.unpack("<iiii", attrs["dataWindow"][1])
        width, height = x1 - x0 + 1, y1 - y0 + 1
        channels = _channels(attrs["channels"][1])
        offsets = np.frombuffer(data, dtype="<u8", count=height, offset=pos)
        pos += 8 * height
        prefix = 12 if multipart else 8  # [part number] y, data size
        row = sum(dt.itemsize for _, dt in channels) * width
        if np.any(np.diff(offsets.astype(np.int64)) != prefix + row):
            raise ValueError("EXR scanlines are not stored one per chunk in order")
        rows = np.frombuffer(data, dtype=np.uint8, count=height * (prefix + row), offset=int(offsets[0]))
        rows = rows.reshape(height, prefix + row)[:, prefix:]
        part_name = attrs["name"][1].rstrip(b"\0").decode("utf-8") if "name" in attrs else ""
        start = 0
        for name, dt in channels:
            size = dt.itemsize * width
            pixels = rows[:, start:start + size].copy().view(dt).reshape(height, width)
            start += size
            if part_name and not name.startswith(part_name + "."):
                name = f"{part_name}.{name}"
            out[name] = pixels.astype(np.float32) if dt.kind == "f" else pixels
    return out


def find_pass(channels, pass_names, channel):
    """The (H, W) array of the first pass in ``pass_names`` whose channel is ``channel`` ("...Depth.Z").

    Raises ValueError listing the channels present when none matches.
    """
    for pass_name in pass_names:
        suffix = f"{pass_name}.{channel}"
        for name, pixels in channels.items():
            if name == suffix or name.endswith("." + suffix):
                return pixels
    raise ValueError(f"EXR has none of the passes {pass_names} (channel {channel}); it has {sorted(channels)}")
