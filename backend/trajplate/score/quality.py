"""Image-quality proxies: first-frame PSNR/SSIM against the render, temporal flicker, sharpness over time."""

from __future__ import annotations

from functools import cache

import cv2
import numpy as np

PSNR_CAP_DB = 100.0


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two (H, W, 3) uint8 images (peak 255), capped at 100 dB (identical images; JSON has no inf)."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return min(PSNR_CAP_DB, float(10 * np.log10(255.0**2 / mse))) if mse else PSNR_CAP_DB


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Mean SSIM (Wang et al., IEEE TIP 2004: 11×11 Gaussian window, σ = 1.5, K1 = 0.01, K2 = 0.03) of the
    luma of two (H, W, 3) uint8 RGB images, in [−1, 1]."""
    x = cv2.cvtColor(a, cv2.COLOR_RGB2GRAY).astype(np.float64)
    y = cv2.cvtColor(b, cv2.COLOR_RGB2GRAY).astype(np.float64)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2

    def blur(z):
        return cv2.GaussianBlur(z, (11, 11), 1.5)

    mx, my = blur(x), blur(y)
    sxx, syy, sxy = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
    m = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))
    return float(m.mean())


def warping_error(prev: np.ndarray, nxt: np.ndarray, flow: np.ndarray) -> float:
    """Temporal flicker of one step: mean absolute difference (0–255 units, RGB) between ``prev`` and ``nxt``
    warped back along the optical flow ``flow`` (H, W, 2) float32 from prev to nxt, over the pixels whose
    flow lands inside the image. The warping error of Lai et al. (ECCV 2018) without their occlusion mask,
    which would need a second (backward) flow per step; disocclusions add a small constant that the oracle
    calibration measures.
    """
    H, W = flow.shape[:2]
    gx, gy = _grid(H, W)
    mx, my = gx + flow[..., 0], gy + flow[..., 1]
    warped = cv2.remap(nxt, mx, my, cv2.INTER_LINEAR)
    inside = cv2.remap(np.ones((H, W), np.uint8), mx, my, cv2.INTER_NEAREST, borderValue=0)
    if not inside.any():
        return float("nan")
    return float(np.mean(cv2.mean(cv2.absdiff(warped, prev), mask=inside)[:3]))


@cache
def _grid(H: int, W: int) -> tuple[np.ndarray, np.ndarray]:
    return np.meshgrid(np.arange(W, dtype=np.float32), np.arange(H, dtype=np.float32))


def sharpness(gray: np.ndarray) -> float:
    """Variance of the Laplacian of a (H, W) uint8 image (Pech-Pacheco et al., ICPR 2000): falls as it blurs."""
    return float(cv2.Laplacian(gray, cv2.CV_64F).var())
