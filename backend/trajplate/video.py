"""MP4 in and out through PyAV (its wheel bundles FFmpeg with libx264; no system ffmpeg needed).

Takes are written for editing in Blender's sequencer: H.264, yuv420p, BT.709 limited range, constant frame rate at
the pipeline's native fps, CRF 17 and a short GOP (a keyframe every 8 frames) so scrubbing stays smooth, with the
moov atom at the front. Provenance (job id, pipeline, seed, bundle hash) goes into the container metadata as
``trajplate_*`` tags and, as one JSON string, into ``comment`` (the tag every player shows).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
from av.video.reformatter import ColorPrimaries, ColorRange, Colorspace, ColorTrc

CRF = 17
GOP = 8
METADATA_PREFIX = "trajplate_"


@dataclass
class DecodedVideo:
    """frames: (T, H, W, 3) uint8 RGB; fps: container frame rate; metadata: the ``trajplate_*`` tags (prefix removed)."""

    frames: np.ndarray
    fps: float
    metadata: dict[str, str]


def _check_frames(frames: np.ndarray) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be (T, H, W, 3) uint8 RGB; got shape {frames.shape} dtype {frames.dtype}")
    if frames.shape[0] == 0:
        raise ValueError("frames is empty: a video needs at least one frame")
    return frames


def _pad_even(frames: np.ndarray) -> np.ndarray:
    """4:2:0 needs even sizes: an odd width/height gets one replicated column/row on the right/bottom."""
    pad_h, pad_w = frames.shape[1] % 2, frames.shape[2] % 2
    if pad_h or pad_w:
        frames = np.pad(frames, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    return frames


def write_mp4(
    path: str | Path,
    frames: np.ndarray,
    fps: float,
    *,
    metadata: dict[str, Any] | None = None,
    crf: int = CRF,
    gop: int = GOP,
    preset: str = "fast",
) -> Path:
    """Encode ``frames`` (T, H, W, 3) uint8 RGB to an H.264 MP4 at ``fps`` and return ``path``.

    The file is written under a temporary name in the same folder and renamed into place, so ``path`` never holds a
    half-written video (an earlier file at ``path`` stays intact when encoding fails, e.g. on a full disk: the
    ``OSError`` propagates). Odd sizes are padded by one replicated row/column (4:2:0 needs even sizes).
    ``metadata`` values are stored as strings under ``trajplate_<key>`` and, together, as JSON in ``comment``.
    Raises ValueError for bad frames or fps.
    """
    frames = _pad_even(_check_frames(frames))
    if not np.isfinite(fps) or fps <= 0:
        raise ValueError(f"fps must be a positive number; got {fps!r}")
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
    meta = {k: str(v) for k, v in (metadata or {}).items()}
    try:
        with av.open(str(tmp), "w", format="mp4", options={"movflags": "+faststart+use_metadata_tags"}) as container:
            for key, value in meta.items():
                container.metadata[METADATA_PREFIX + key] = value
            if meta:
                container.metadata["comment"] = json.dumps(meta, sort_keys=True)
            stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
            stream.width, stream.height = frames.shape[2], frames.shape[1]
            stream.pix_fmt = "yuv420p"
            stream.options = {"crf": str(crf), "preset": preset, "keyint_min": "1", "sc_threshold": "0"}
            ctx = stream.codec_context
            ctx.gop_size = gop
            ctx.color_range, ctx.colorspace = ColorRange.MPEG, Colorspace.ITU709
            ctx.color_primaries, ctx.color_trc = ColorPrimaries.BT709, ColorTrc.BT709
            for rgb in frames:
                frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(
                    format="yuv420p", dst_colorspace=Colorspace.ITU709, dst_color_range=ColorRange.MPEG
                )
                container.mux(stream.encode(frame))
            container.mux(stream.encode(None))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def read_mp4(path: str | Path) -> DecodedVideo:
    """Decode every frame of the first video stream of ``path`` to (T, H, W, 3) uint8 RGB (BT.709 matrix).

    Raises ``av.error.FFmpegError`` (a subclass of OSError/ValueError) when the file is not a readable video.
    """
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = [
            f.to_ndarray(format="rgb24", src_colorspace=Colorspace.ITU709, src_color_range=ColorRange.MPEG)
            for f in container.decode(stream)
        ]
        fps = float(stream.average_rate or stream.base_rate or 0)
        meta = {k[len(METADATA_PREFIX):]: v for k, v in container.metadata.items() if k.startswith(METADATA_PREFIX)}
    return DecodedVideo(frames=np.stack(frames), fps=fps, metadata=meta)
