"""Camera adherence: the take's camera recovered by PnP on background points whose world positions are exact."""

from __future__ import annotations

import numpy as np

from .geometry import invert_poses, rotation_angle_deg
from .metrics import ate_rmse, pose_errors, rpe
from .pnp import solve_poses
from .truth import Truth

MIN_POINTS = 8


def camera_adherence(
    world_xyz: np.ndarray, xy: np.ndarray, truth: Truth, K_cv: np.ndarray, *, ransac_px: float
) -> tuple[np.ndarray, np.ndarray, dict]:
    """Recover the camera of every sequence frame and compare it with the shot's.

    world_xyz: (P, 3) float64 background points, world, metres; xy: (S, P, 2) float32 their tracks in OpenCV
    pixels (frame 0 is the shot's render, frames 1.. the take); truth: :class:`Truth` for the same S frames;
    K_cv: (S, 3, 3) intrinsics in OpenCV's pixel convention.
    Returns the estimated world-to-camera poses (S, 4, 4) (OpenCV axes, NaN where PnP failed), the tracks with
    the points that broke the rigid scene dropped (see :func:`solve_poses`), and the report:
    per take frame ``rot_deg`` (geodesic) and ``trans_m`` (camera-centre distance), ``inliers``, ``reproj_px``;
    over the take ``ate_m`` (no alignment: the take's camera lives in the shot's world), ``ate_aligned_m``
    (after Umeyama alignment: shape of the path only), ``rpe_trans_m`` and ``rpe_rot_deg`` (Δ = 1 take frame),
    and the shot's own camera motion over the take (``motion_rot_deg``, ``motion_trans_m``).
    """
    fit = solve_poses(world_xyz, xy, K_cv, truth.w2c[0], ransac_px=ransac_px, min_inliers=MIN_POINTS)
    est_c2w = invert_poses(fit.pose)
    rot, trans = pose_errors(est_c2w[1:], truth.c2w[1:])
    rpe_t, rpe_r = rpe(est_c2w[1:], truth.c2w[1:])
    motion_rot = rotation_angle_deg(np.swapaxes(truth.c2w[1, :3, :3], -1, -2) @ truth.c2w[1:, :3, :3])
    motion_trans = np.linalg.norm(truth.c2w[1:, :3, 3] - truth.c2w[1, :3, 3], axis=-1)
    report = {
        "rot_deg": rot,
        "trans_m": trans,
        "inliers": fit.inliers[1:],
        "reproj_px": fit.reproj_px[1:],
        "ate_m": ate_rmse(est_c2w[1:], truth.c2w[1:]),
        "ate_aligned_m": ate_rmse(est_c2w[1:], truth.c2w[1:], align=True),
        "rpe_trans_m": rpe_t,
        "rpe_rot_deg": rpe_r,
        "motion_rot_deg": float(motion_rot.max()),
        "motion_trans_m": float(motion_trans.max()),
    }
    return fit.pose, fit.xy, report
