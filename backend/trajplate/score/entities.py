"""Entity adherence: each entity's pose by PnP on its own tracked points, composed with the recovered camera;
and in 2D, ObjMC and box IoU against the exact projections of the same points."""

from __future__ import annotations

import numpy as np

from .geometry import invert_poses, project, transform
from .metrics import box_iou, pose_errors
from .pnp import solve_poses
from .truth import Truth

MIN_POINTS = 6
MIN_BOX_POINTS = 3


def _points_box(xy: np.ndarray, alive: np.ndarray) -> np.ndarray:
    """(S, 4) x0, y0, x1, y1 of the alive points per frame; NaN with fewer than MIN_BOX_POINTS."""
    box = np.full((len(xy), 4), np.nan)
    for s in range(len(xy)):
        p = xy[s, alive[s]]
        if len(p) >= MIN_BOX_POINTS:
            box[s] = (*p.min(0), *p.max(0))
    return box


def entity_adherence(
    k: int, cam_xyz: np.ndarray, xy: np.ndarray, truth: Truth, K_cv: np.ndarray, est_w2c: np.ndarray, *, ransac_px: float
) -> tuple[np.ndarray, dict]:
    """Score entity column ``k`` (entity id k + 1) over the sequence (frame 0 the render, 1.. the take).

    cam_xyz: (P, 3) float64 the entity's seed points in the render's OpenCV camera frame, metres; xy: (S, P, 2)
    float32 their tracks, OpenCV pixels, NaN once lost; truth: :class:`Truth` for the S frames; K_cv: (S, 3, 3)
    OpenCV-convention intrinsics; est_w2c: (S, 4, 4) the recovered cameras (NaN where PnP failed).
    Returns the tracks with the points that broke the entity's rigid motion dropped, and per take frame: ``trans_m`` and ``rot_deg`` (world pose error; NaN where the entity's or the
    camera's PnP failed), ``objmc_px`` (mean distance of tracked points to their exact projections),
    ``box_iou`` (box of the tracked points vs the box of their exact projections), ``survival`` (fraction of
    the entity's points still tracked) and ``in_view`` (the shot's ``box_2d_valid``).
    """
    local = transform(invert_poses(truth.entity_cam[0, k]), cam_xyz)
    fit = solve_poses(local, xy, K_cv, truth.entity_cam[0, k], ransac_px=ransac_px, min_inliers=MIN_POINTS,
                      drop_on_failure=True)
    xy = fit.xy
    est_world = invert_poses(est_w2c) @ fit.pose
    rot, trans = pose_errors(est_world[1:], truth.entity_world[1:, k])
    alive = np.isfinite(xy[..., 0])
    exact = project(K_cv, transform(truth.entity_cam[:, k], local))  # (S, P, 2) OpenCV pixels
    dist = np.linalg.norm(xy - exact, axis=-1)
    counted = alive & np.isfinite(dist)
    n = counted.sum(axis=1)
    objmc = np.where(n > 0, np.where(counted, dist, 0.0).sum(axis=1) / np.maximum(n, 1), np.nan)
    iou = box_iou(_points_box(xy, alive), _points_box(exact, alive & np.isfinite(exact[..., 0])))
    return xy, {
        "trans_m": trans,
        "rot_deg": rot,
        "objmc_px": objmc[1:],
        "box_iou": iou[1:],
        "survival": alive[1:].mean(axis=1) if alive.shape[1] else np.zeros(len(xy) - 1),
        "in_view": truth.box_valid[1:, k],
        "inliers": fit.inliers[1:],
    }
