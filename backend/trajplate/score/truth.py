"""The shot's exact geometry sampled at the take's frames (through the time map).

A take frame stands for a Blender frame (``shot_frames``, possibly fractional). Poses between two exported
frames are interpolated (linear translation, geodesic rotation), intrinsics and boxes linearly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .geometry import interpolate_poses, invert_poses


class ScoreInputError(ValueError):
    """The take, the shot or the time map cannot be scored; the message names the field and the fix."""


@dataclass(frozen=True)
class Truth:
    """Exact ground truth at each take frame (T frames, N entities).

    index: (T,) float64 fractional index into the shot's exported frames.
    w2c: (T, 4, 4) float64 world-to-camera, OpenCV axes, metres. c2w: its inverse.
    K: (T, 3, 3) float64 pixels at the shot's resolution, pixel centres at +0.5.
    entity_cam: (T, N, 4, 4) float64 entity pose in the OpenCV camera frame, scale removed.
    entity_world: (T, N, 4, 4) float64 entity pose in the world, scale removed (c2w · entity_cam).
    box_2d: (T, N, 4) float64 x0, y0, x1, y1 pixels; box_valid: (T, N) bool (valid at both neighbours).
    """

    index: np.ndarray
    w2c: np.ndarray
    c2w: np.ndarray
    K: np.ndarray
    entity_cam: np.ndarray
    entity_world: np.ndarray
    box_2d: np.ndarray
    box_valid: np.ndarray


def shot_index(shot, shot_frames: np.ndarray) -> np.ndarray:
    """Fractional index into ``shot.frame_numbers`` of each Blender frame in ``shot_frames`` (T,) float64.

    Raises :class:`ScoreInputError` when a frame lies outside the exported range (beyond half a frame step).
    """
    frames = np.asarray(shot.frame_numbers, dtype=np.float64)
    sf = np.asarray(shot_frames, dtype=np.float64)
    if sf.ndim != 1 or len(sf) == 0 or not np.isfinite(sf).all():
        raise ScoreInputError(f"shot_frames: expected a non-empty 1-D array of finite Blender frames, got shape {sf.shape}")
    step = float(np.median(np.diff(frames))) if len(frames) > 1 else 1.0
    if sf.min() < frames[0] - step / 2 or sf.max() > frames[-1] + step / 2:
        raise ScoreInputError(
            f"shot_frames: Blender frames {sf.min():g}..{sf.max():g} fall outside the shot's exported frames "
            f"{frames[0]:g}..{frames[-1]:g}; pass the time map of this take (GeneratedVideo.shot_frames)"
        )
    return np.interp(sf, frames, np.arange(len(frames), dtype=np.float64))


def sample_truth(shot, shot_frames: np.ndarray) -> Truth:
    """Exact camera, intrinsics, entity poses and boxes at each take frame. See :class:`Truth` for shapes."""
    idx = shot_index(shot, shot_frames)
    w2c = interpolate_poses(np.asarray(shot.camera_w2c_opencv, dtype=np.float64), idx)
    ent = np.asarray(shot.entity_cam_opencv, dtype=np.float64)
    entity_cam = interpolate_poses(ent, idx) if ent.shape[1] else np.zeros((len(idx), 0, 4, 4))
    i0 = np.floor(idx).astype(int)
    i1 = np.minimum(i0 + 1, len(shot.frame_numbers) - 1)
    a = (idx - i0)[:, None, None]
    K = np.asarray(shot.intrinsics)[i0] * (1 - a) + np.asarray(shot.intrinsics)[i1] * a
    box = np.asarray(shot.box_2d)[i0] * (1 - a) + np.asarray(shot.box_2d)[i1] * a
    valid = np.asarray(shot.box_2d_valid)[i0] & np.asarray(shot.box_2d_valid)[i1]
    c2w = invert_poses(w2c)
    return Truth(idx, w2c, c2w, K, entity_cam, c2w[:, None] @ entity_cam, box, valid)
