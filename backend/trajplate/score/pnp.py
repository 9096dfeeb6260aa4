"""Per-frame pose from tracked 2D points with known 3D positions: PnP with RANSAC, then LM refinement."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class PoseTrack:
    """pose: (S, 4, 4) float64 model-to-camera (OpenCV axes), NaN where no pose was found.
    inliers: (S,) int32 RANSAC inliers; reproj_px: (S,) float64 RMS reprojection error of the inliers;
    xy: (S, P, 2) float32 the tracks with every point NaN from the frame where it broke the rigid motion on."""

    pose: np.ndarray
    inliers: np.ndarray
    reproj_px: np.ndarray
    xy: np.ndarray


def _to_pose(rvec: np.ndarray, tvec: np.ndarray) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3] = cv2.Rodrigues(rvec)[0]
    T[:3, 3] = tvec.ravel()
    return T


def solve_poses(
    model_xyz: np.ndarray,
    xy: np.ndarray,
    K_cv: np.ndarray,
    init: np.ndarray,
    *,
    ransac_px: float = 2.0,
    min_inliers: int = 6,
    drop_on_failure: bool = False,
) -> PoseTrack:
    """Pose of a rigid point set in each frame.

    model_xyz: (P, 3) float64 points in the model frame, metres (world points for the camera, entity-local
    points for an entity); xy: (S, P, 2) float32 tracked OpenCV pixels, NaN when lost; K_cv: (S, 3, 3)
    intrinsics in OpenCV's pixel convention; init: (4, 4) model-to-camera pose of frame 0's neighbourhood,
    used as the first RANSAC guess (each later frame starts from the previous solution, so a planar point
    set keeps the physically continuous solution). Frames with fewer than ``min_inliers`` give NaN.

    A point farther than ``2 × ransac_px`` from the frame's best rigid pose is dropped for the rest of the
    sequence: it is a tracking failure (stuck on an occluder or on the background behind a thin object), and
    because the test is against the take's own rigid motion, not the shot's, it does not bias the score.
    With ``drop_on_failure`` every point is dropped from the first frame whose points are too few or admit no
    rigid pose (a small entity's last points then mostly sit on whatever passed in front of or behind it).
    """
    S = len(xy)
    xy = xy.copy()
    poses = np.full((S, 4, 4), np.nan)
    inliers = np.zeros(S, np.int32)
    reproj = np.full(S, np.nan)
    guess = init
    for s in range(S):
        ok = np.isfinite(xy[s, :, 0])
        if ok.sum() < min_inliers:
            if drop_on_failure:
                xy[s:] = np.nan
            continue
        obj = model_xyz[ok].astype(np.float64)
        img = xy[s, ok].astype(np.float64)
        rvec0 = cv2.Rodrigues(guess[:3, :3])[0]
        tvec0 = guess[:3, 3].reshape(3, 1).copy()
        found, rvec, tvec, inl = cv2.solvePnPRansac(
            obj, img, K_cv[s], None, rvec0, tvec0, useExtrinsicGuess=True, iterationsCount=200,
            reprojectionError=ransac_px, confidence=0.999, flags=cv2.SOLVEPNP_ITERATIVE,
        )
        if not found or inl is None or len(inl) < min_inliers:
            if drop_on_failure:
                xy[s:] = np.nan
            continue
        inl = inl.ravel()
        rvec, tvec = cv2.solvePnPRefineLM(obj[inl], img[inl], K_cv[s], None, rvec, tvec)
        err = np.linalg.norm(cv2.projectPoints(obj, rvec, tvec, K_cv[s], None)[0].reshape(-1, 2) - img, axis=1)
        broken = np.flatnonzero(ok)[err > 2 * ransac_px]
        xy[s:, broken] = np.nan
        poses[s] = guess = _to_pose(rvec, tvec)
        inliers[s] = len(inl)
        reproj[s] = float(np.sqrt(np.mean(err[inl] ** 2)))
    return PoseTrack(poses, inliers, reproj, xy)
