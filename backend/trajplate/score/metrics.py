"""Trajectory and box metrics: pose errors, ATE/RPE, Umeyama alignment, box IoU, calibration normalisation.

ATE and RPE follow Sturm et al., "A Benchmark for the Evaluation of RGB-D SLAM Systems" (IROS 2012), eq. 6
and eq. 8 (RMSE of the translational parts; the rotational RPE is the mean geodesic angle). The optional
alignment is Umeyama, "Least-squares estimation of transformation parameters between two point patterns"
(IEEE TPAMI 1991), without scale because the shot's world is metric. We write these few lines ourselves
rather than depend on ``evo``: its alignment and RMSE are the same formulas and it would pull in plotting
dependencies the service does not need.
"""

from __future__ import annotations

import numpy as np

from .geometry import invert_poses, rotation_angle_deg


def pose_errors(est: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-pose rotation error (degrees, geodesic) and translation error (metres) of ``est`` vs ``gt``.

    est, gt: (..., 4, 4) float64 rigid poses in the same frame convention (e.g. both camera-to-world);
    the translation error is the distance between their translation columns (for c2w: the camera centres).
    NaN poses give NaN errors.
    """
    rot = rotation_angle_deg(np.swapaxes(est[..., :3, :3], -1, -2) @ gt[..., :3, :3])
    trans = np.linalg.norm(est[..., :3, 3] - gt[..., :3, 3], axis=-1)
    return rot, trans


def umeyama(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Rigid transform (4, 4) minimising Σ‖dst − (R·src + t)‖² (Umeyama 1991, scale fixed to 1).

    src, dst: (P, 3) float64 corresponding points, P ≥ 3 not collinear. Raises ValueError otherwise.
    """
    if len(src) < 3:
        raise ValueError(f"umeyama: need at least 3 corresponding points, got {len(src)}")
    mu_s, mu_d = src.mean(0), dst.mean(0)
    cov = (dst - mu_d).T @ (src - mu_s) / len(src)
    U, _, Vt = np.linalg.svd(cov)
    S = np.eye(3)
    if np.linalg.det(U) * np.linalg.det(Vt) < 0:
        S[2, 2] = -1
    T = np.eye(4)
    T[:3, :3] = U @ S @ Vt
    T[:3, 3] = mu_d - T[:3, :3] @ mu_s
    return T


def ate_rmse(est_c2w: np.ndarray, gt_c2w: np.ndarray, *, align: bool = False) -> float:
    """Absolute trajectory error (Sturm 2012, eq. 8): RMSE of camera-centre differences, metres.

    est_c2w, gt_c2w: (T, 4, 4) camera-to-world poses in the shot's world frame; frames where ``est`` is NaN
    are skipped. ``align=True`` first applies the Umeyama rigid alignment of the estimated centres onto the
    true ones (measures the path's shape only). NaN when fewer than 3 frames (align) or none are valid.
    """
    ok = np.isfinite(est_c2w).all(axis=(1, 2))
    p, q = est_c2w[ok, :3, 3], gt_c2w[ok, :3, 3]
    if len(p) == 0 or (align and len(p) < 3):
        return float("nan")
    if align:
        S = umeyama(p, q)
        p = p @ S[:3, :3].T + S[:3, 3]
    return float(np.sqrt(np.mean(np.sum((p - q) ** 2, axis=1))))


def rpe(est_c2w: np.ndarray, gt_c2w: np.ndarray, delta: int = 1) -> tuple[float, float]:
    """Relative pose error (Sturm 2012, eq. 6) over ``delta`` frames: (translation RMSE metres, mean rotation degrees).

    E_i = (Q_i⁻¹ Q_{i+Δ})⁻¹ (P_i⁻¹ P_{i+Δ}) with Q the true and P the estimated camera-to-world poses (T, 4, 4).
    Pairs with a NaN pose are skipped; (NaN, NaN) when no pair is valid.
    """
    ok = np.isfinite(est_c2w).all(axis=(1, 2))
    pairs = np.flatnonzero(ok[:-delta] & ok[delta:])
    if len(pairs) == 0:
        return float("nan"), float("nan")
    P_rel = invert_poses(est_c2w[pairs]) @ est_c2w[pairs + delta]
    Q_rel = invert_poses(gt_c2w[pairs]) @ gt_c2w[pairs + delta]
    E = invert_poses(Q_rel) @ P_rel
    trans = float(np.sqrt(np.mean(np.sum(E[:, :3, 3] ** 2, axis=1))))
    return trans, float(np.mean(rotation_angle_deg(E[:, :3, :3])))


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over union of boxes ``a``, ``b`` (..., 4) as x0, y0, x1, y1 pixels; NaN where either is NaN."""
    iw = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    ih = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = iw * ih
    area = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1]) + (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    with np.errstate(invalid="ignore", divide="ignore"):
        return inter / (area - inter)


def normalise(raw: float | None, oracle: float | None, frozen: float | None, min_gap: float) -> float | None:
    """Place ``raw`` on the scale oracle = 1, frozen take = 0 (not clipped: < 0 is worse than ignoring the control).

    Works for lower- and higher-is-better metrics alike. None when a value is missing or the oracle and the
    frozen take are less than ``min_gap`` apart (the shot has no motion this metric can see).
    """
    if raw is None or oracle is None or frozen is None or not np.isfinite([raw, oracle, frozen]).all():
        return None
    if abs(frozen - oracle) < min_gap:
        return None
    return float((frozen - raw) / (frozen - oracle))
