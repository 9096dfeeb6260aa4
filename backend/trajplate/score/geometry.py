"""Small SE(3)/SO(3) helpers for the adherence score (NumPy only).

Poses are 4×4 float64 homogeneous matrices; rotations are 3×3. Angles are radians unless a
name says ``_deg``. Batched functions accept any leading shape ``(...)``.
"""

from __future__ import annotations

import numpy as np


def so3_log(R: np.ndarray) -> np.ndarray:
    """Rotation vectors (axis × angle, radians) of rotations ``R`` (..., 3, 3) → (..., 3).

    Uses ``atan2(|vee(R − Rᵀ)|/2, (tr R − 1)/2)``, accurate for small angles, and the symmetric part
    for angles near π (where the skew part vanishes).
    """
    R = np.asarray(R, dtype=np.float64)
    skew = np.stack([R[..., 2, 1] - R[..., 1, 2], R[..., 0, 2] - R[..., 2, 0], R[..., 1, 0] - R[..., 0, 1]], -1) / 2
    sin = np.linalg.norm(skew, axis=-1)
    cos = (np.trace(R, axis1=-2, axis2=-1) - 1) / 2
    angle = np.arctan2(sin, cos)
    with np.errstate(invalid="ignore", divide="ignore"):
        axis = skew / sin[..., None]
    # Near π: the axis is the column of (R + I)/2 with the largest diagonal entry.
    near_pi = (sin < 1e-6) & (cos < 0)
    if np.any(near_pi):
        S = (R[near_pi] + np.eye(3)) / 2
        col = np.argmax(np.diagonal(S, axis1=-2, axis2=-1), axis=-1)
        v = S[np.arange(len(S)), :, col]
        axis[near_pi] = v / np.linalg.norm(v, axis=-1, keepdims=True)
    small = sin < 1e-12
    axis[small & ~near_pi] = 0.0
    return axis * angle[..., None]


def so3_exp(w: np.ndarray) -> np.ndarray:
    """Rotation matrices (..., 3, 3) of rotation vectors ``w`` (..., 3), radians (Rodrigues' formula)."""
    w = np.asarray(w, dtype=np.float64)
    theta = np.linalg.norm(w, axis=-1)[..., None, None]
    K = np.zeros(w.shape[:-1] + (3, 3))
    K[..., 0, 1], K[..., 0, 2], K[..., 1, 2] = -w[..., 2], w[..., 1], -w[..., 0]
    K[..., 1, 0], K[..., 2, 0], K[..., 2, 1] = w[..., 2], -w[..., 1], w[..., 0]
    with np.errstate(invalid="ignore", divide="ignore"):
        a = np.where(theta > 1e-12, np.sin(theta) / theta, 1.0)
        b = np.where(theta > 1e-12, (1 - np.cos(theta)) / theta**2, 0.5)
    return np.eye(3) + a * K + b * (K @ K)


def rotation_angle_deg(R: np.ndarray) -> np.ndarray:
    """Geodesic angle of rotations ``R`` (..., 3, 3) in degrees; NaN where ``R`` has NaN."""
    return np.degrees(np.linalg.norm(so3_log(R), axis=-1))


def invert_poses(T: np.ndarray) -> np.ndarray:
    """Inverse of rigid transforms ``T`` (..., 4, 4) (rotation + translation, no scale)."""
    T = np.asarray(T, dtype=np.float64)
    out = np.zeros_like(T)
    Rt = np.swapaxes(T[..., :3, :3], -1, -2)
    out[..., :3, :3] = Rt
    out[..., :3, 3] = -(Rt @ T[..., :3, 3, None])[..., 0]
    out[..., 3, 3] = 1.0
    return out


def interpolate_poses(T: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Rigid poses ``T`` (F, ..., 4, 4) sampled at fractional frame indices ``index`` (S,) → (S, ..., 4, 4).

    Translation is interpolated linearly, rotation along the geodesic (slerp), between the two
    neighbouring frames. ``index`` must lie in [0, F − 1].
    """
    i0 = np.clip(np.floor(index).astype(int), 0, len(T) - 1)
    i1 = np.minimum(i0 + 1, len(T) - 1)
    a = (index - i0).reshape((-1,) + (1,) * (T.ndim - 1))
    T0, T1 = T[i0], T[i1]
    out = T0 * (1 - a) + T1 * a
    R0 = T0[..., :3, :3]
    delta = so3_log(np.swapaxes(R0, -1, -2) @ T1[..., :3, :3])
    out[..., :3, :3] = R0 @ so3_exp(delta * a[..., 0])
    out[..., 3, :] = (0.0, 0.0, 0.0, 1.0)
    return out


def project(K: np.ndarray, xyz_cam: np.ndarray) -> np.ndarray:
    """Pixel coordinates (..., P, 2) of camera-frame points ``xyz_cam`` (..., P, 3), OpenCV axes, metres.

    ``K`` (..., 3, 3) broadcasts over the leading axes (no skew). The pixel convention is ``K``'s: the shot's
    K gives pixel-corner coordinates (centres at +0.5), :func:`opencv_K` OpenCV's integer pixel centres.
    Points with z ≤ 0 give NaN.
    """
    K = np.asarray(K, dtype=np.float64)
    f = np.stack([K[..., 0, 0], K[..., 1, 1]], -1)[..., None, :]
    c = np.stack([K[..., 0, 2], K[..., 1, 2]], -1)[..., None, :]
    z = xyz_cam[..., 2:3]
    with np.errstate(invalid="ignore", divide="ignore"):
        uv = np.where(z > 0, xyz_cam[..., :2] / z, np.nan)
    return uv * f + c


def opencv_K(K: np.ndarray) -> np.ndarray:
    """The shot's K (pixel centres at +0.5) shifted to OpenCV's convention (integer pixel centres): cx, cy − 0.5."""
    out = np.array(K, dtype=np.float64, copy=True)
    out[..., 0, 2] -= 0.5
    out[..., 1, 2] -= 0.5
    return out


def transform(T: np.ndarray, xyz: np.ndarray) -> np.ndarray:
    """Apply rigid transforms ``T`` (..., 4, 4) to points ``xyz`` (..., P, 3) → (..., P, 3)."""
    return xyz @ np.swapaxes(T[..., :3, :3], -1, -2) + T[..., None, :3, 3]
