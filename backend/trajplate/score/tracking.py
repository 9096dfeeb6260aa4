"""Track seed points through a frame sequence: pyramidal Lucas–Kanade with a forward–backward check,
cross-checked against DIS optical flow.

A point is dropped for good when LK loses it, when tracking it back lands more than ``fb_px`` from where
it started (Kalal et al., "Forward-Backward Error", ICPR 2010), or when LK and DIS disagree by more than
``dis_px`` (a gross LK failure the forward-backward check can miss on repetitive texture).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

FlowFn = Callable[[int, np.ndarray], None]
"""``on_flow(i, flow)``: DIS flow (H, W, 2) float32 from frame i to frame i + 1, pixels."""


@dataclass(frozen=True)
class Tracks:
    """xy: (S, P, 2) float32 OpenCV pixel positions per frame of the sequence, NaN once lost.
    dis_px: (S − 1,) float64 median |LK − DIS| displacement difference per step (NaN with no points)."""

    xy: np.ndarray
    dis_px: np.ndarray

    @property
    def alive(self) -> np.ndarray:
        """(S, P) bool: the point is still tracked in that frame."""
        return np.isfinite(self.xy[..., 0])


def _sample_flow(flow: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """Bilinear flow (P, 2) at OpenCV pixel positions xy (P, 2)."""
    maps = xy.reshape(-1, 1, 2).astype(np.float32)
    return cv2.remap(flow, maps[..., 0], maps[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE).reshape(-1, 2)


def track_points(
    grays: list[np.ndarray],
    xy0: np.ndarray,
    *,
    fb_px: float = 1.0,
    dis_px: float = 4.0,
    anchor_px: float = 1.0,
    win: int = 15,
    levels: int = 4,
    on_flow: FlowFn | None = None,
) -> Tracks:
    """Track points ``xy0`` (P, 2) float32 (OpenCV pixels in ``grays[0]``) through ``grays`` (S frames of
    (H, W) uint8, all the same size). ``on_flow`` receives every step's DIS flow (computed once, reused by
    the caller for the flicker measure). Returns :class:`Tracks`.
    """
    S, P = len(grays), len(xy0)
    xy = np.full((S, P, 2), np.nan, np.float32)
    xy[0] = xy0
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST)
    lk = dict(winSize=(win, win), maxLevel=levels, criteria=(cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 30, 0.01))
    disagreement = np.full(S - 1, np.nan)
    for i in range(S - 1):
        flow = dis.calc(grays[i], grays[i + 1], None)
        if on_flow is not None:
            on_flow(i, flow)
        idx = np.flatnonzero(np.isfinite(xy[i, :, 0]))
        if len(idx) == 0:
            continue
        p0 = xy[i, idx].reshape(-1, 1, 2)
        # Initialise LK with DIS: large motions then converge from the right basin.
        guess = (p0.reshape(-1, 2) + _sample_flow(flow, p0.reshape(-1, 2))).reshape(-1, 1, 2)
        p1, st1, _ = cv2.calcOpticalFlowPyrLK(grays[i], grays[i + 1], p0, guess.copy(), flags=cv2.OPTFLOW_USE_INITIAL_FLOW, **lk)
        pb, st2, _ = cv2.calcOpticalFlowPyrLK(grays[i + 1], grays[i], p1, p0.copy(), flags=cv2.OPTFLOW_USE_INITIAL_FLOW, **lk)
        p0, p1, pb = p0.reshape(-1, 2), p1.reshape(-1, 2), pb.reshape(-1, 2)
        diff = np.linalg.norm((p1 - p0) - (guess.reshape(-1, 2) - p0), axis=1)
        H, W = grays[i].shape
        inside = (p1[:, 0] >= 0) & (p1[:, 0] <= W - 1) & (p1[:, 1] >= 0) & (p1[:, 1] <= H - 1)
        ok = (st1[:, 0] == 1) & (st2[:, 0] == 1) & (np.linalg.norm(pb - p0, axis=1) <= fb_px) & inside
        disagreement[i] = float(np.median(diff[ok])) if ok.any() else np.nan
        ok &= diff <= dis_px
        # Drift correction: re-align each point with its appearance in frame 0 (the seed frame); accepted
        # only as a small correction, since the look of a point changes with scale and rotation.
        pa, sta, _ = cv2.calcOpticalFlowPyrLK(grays[0], grays[i + 1], xy[0, idx].reshape(-1, 1, 2), p1.reshape(-1, 1, 2).copy(),
                                              flags=cv2.OPTFLOW_USE_INITIAL_FLOW, winSize=(win, win), maxLevel=1)
        pa = pa.reshape(-1, 2)
        snap = (sta[:, 0] == 1) & (np.linalg.norm(pa - p1, axis=1) <= anchor_px)
        p1[snap] = pa[snap]
        xy[i + 1, idx[ok]] = p1[ok]
    return Tracks(xy, disagreement)
