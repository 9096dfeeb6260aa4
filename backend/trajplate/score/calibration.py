"""Calibration of the score on one shot: the oracle (the shot rendered by Blender for every frame: what a
perfect take scores, i.e. tracker + PnP noise) and the frozen take (the first frame held: what a take that
ignored the control scores)."""

from __future__ import annotations

import numpy as np

from .take import score_take
from .truth import shot_index


def frozen_take(shot, n_frames: int) -> np.ndarray:
    """(T, H, W, 3) uint8: the shot's first-frame render repeated ``n_frames`` times."""
    return np.repeat(np.asarray(shot.first_frame)[None], n_frames, axis=0)


def oracle_take(shot, shot_frames: np.ndarray) -> np.ndarray | None:
    """(T, H, W, 3) uint8: the shot's per-frame renders at the time map's frames (nearest exported frame), or
    None when the bundle has no per-frame renders (export with ``include_rgb_frames``)."""
    rgb = getattr(shot, "rgb_frames", None)
    if rgb is None:
        return None
    return np.asarray(rgb)[np.rint(shot_index(shot, shot_frames)).astype(int)]


def calibrate(shot, shot_frames: np.ndarray) -> dict:
    """Score the oracle and the frozen take of ``shot`` through the time map ``shot_frames`` (T,) float64.

    Returns ``{"oracle": summary | None, "frozen": summary, "warnings": [...]}`` to pass as
    ``score_take(..., calibration=...)``; the oracle is None when the bundle has no per-frame renders.
    """
    shot_frames = np.asarray(shot_frames, dtype=np.float64)
    warnings = []
    oracle = oracle_take(shot, shot_frames)
    if oracle is None:
        warnings.append("no oracle: the bundle has no per-frame renders (export with include_rgb_frames / --rgb-frames)")
    elif not np.allclose(shot_frames, np.rint(shot_frames)):
        warnings.append("the time map has fractional frames: the oracle uses the nearest exported render")
    return {
        "oracle": score_take(oracle, shot, shot_frames)["summary"] if oracle is not None else None,
        "frozen": score_take(frozen_take(shot, len(shot_frames)), shot, shot_frames)["summary"],
        "warnings": warnings,
    }
