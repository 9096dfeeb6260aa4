"""Seed points on the shot's first-frame render with their exact 3D positions.

Points are Shi–Tomasi corners of the render (``cv2.goodFeaturesToTrack``) on textured background and on
each visible entity (instance mask). Corners come at integer OpenCV pixel positions, i.e. exactly at pixel
centres, where the exported planar depth was rendered, so each point's 3D position is exact: no
interpolation across a surface. Pixels next to a depth discontinuity or a mask boundary are excluded.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

# A plane has inverse depth affine in pixel coordinates, so its second difference is ~0; a step is not.
_PLANARITY_TOL = 0.01


@dataclass(frozen=True)
class Seeds:
    """Seed points (P of them).

    xy: (P, 2) float32 pixel positions in the render, OpenCV convention (integer pixel centres).
    owner: (P,) int32 entity id, 0 for background.
    xyz_cam: (P, 3) float64 position in the OpenCV camera frame of the render's frame, metres.
    """

    xy: np.ndarray
    owner: np.ndarray
    xyz_cam: np.ndarray

    def count(self, owner: int) -> int:
        return int(np.count_nonzero(self.owner == owner))


def reliable_depth(depth: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(H, W) bool: pixels whose depth is finite, whose 3×3 neighbourhood shares their label, and whose
    inverse depth is locally planar (second differences below 1 % of it) — i.e. not on an occlusion edge.

    depth: (H, W) float32 planar z, metres, inf for background; labels: (H, W) integer region ids.
    """
    inv = np.where(np.isfinite(depth) & (depth > 0), 1.0 / np.maximum(depth, 1e-9), 0.0)
    ok = inv > 0
    core = np.zeros_like(ok)
    c = (slice(1, -1), slice(1, -1))
    same = ok[c].copy()
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            nb = (slice(1 + dy, inv.shape[0] - 1 + dy), slice(1 + dx, inv.shape[1] - 1 + dx))
            same &= ok[nb] & (labels[nb] == labels[c])
    ddx = np.abs(inv[1:-1, :-2] + inv[1:-1, 2:] - 2 * inv[c])
    ddy = np.abs(inv[:-2, 1:-1] + inv[2:, 1:-1] - 2 * inv[c])
    core[c] = same & (ddx <= _PLANARITY_TOL * inv[c]) & (ddy <= _PLANARITY_TOL * inv[c])
    return core


def seed_points(
    gray: np.ndarray,
    depth: np.ndarray,
    K: np.ndarray,
    labels: np.ndarray,
    entity_ids: list[int],
    *,
    max_background: int = 300,
    max_per_entity: int = 60,
    min_distance: int = 7,
    min_distance_entity: int = 4,
    border: int = 8,
) -> Seeds:
    """Corners of the render with exact camera-frame 3D positions.

    gray: (H, W) uint8 render; depth: (H, W) float32 planar camera z, metres, inf background;
    K: (3, 3) float64 at this resolution, pixel centres at +0.5 (the shot's convention);
    labels: (H, W) integer entity id per pixel, 0 background (instance mask, or boxes when the bundle has none);
    entity_ids: the ids to seed on (entities get denser corners: they are small). Corners closer than ``border`` px to the image edge are dropped (the
    tracker's window must fit). Returns :class:`Seeds` (possibly empty for a region without texture).
    """
    H, W = gray.shape
    usable = reliable_depth(depth, labels)
    usable[:border] = usable[-border:] = False
    usable[:, :border] = usable[:, -border:] = False
    xy, owner = [], []
    regions = [(0, max_background, min_distance)] + [(e, max_per_entity, min_distance_entity) for e in entity_ids]
    for eid, count, spacing in regions:
        mask = (usable & (labels == eid)).astype(np.uint8)
        if not mask.any():
            continue
        corners = cv2.goodFeaturesToTrack(gray, count, 0.01, spacing, mask=mask, blockSize=5)
        if corners is None:
            continue
        # Integer pixel positions: exactly the pixel centres where depth was rendered.
        c = np.round(corners.reshape(-1, 2))
        c = c[mask[c[:, 1].astype(int), c[:, 0].astype(int)] > 0]
        xy.append(c)
        owner.append(np.full(len(c), eid, np.int32))
    if not xy:
        return Seeds(np.zeros((0, 2), np.float32), np.zeros(0, np.int32), np.zeros((0, 3)))
    xy_all = np.concatenate(xy).astype(np.float32)
    col, row = xy_all[:, 0].astype(int), xy_all[:, 1].astype(int)
    z = depth[row, col].astype(np.float64)
    # The shot's K puts pixel centres at +0.5: OpenCV position (c, r) is the ray through (c + 0.5, r + 0.5).
    x = (xy_all[:, 0] + 0.5 - K[0, 2]) / K[0, 0] * z
    y = (xy_all[:, 1] + 0.5 - K[1, 2]) / K[1, 1] * z
    return Seeds(xy_all, np.concatenate(owner), np.stack([x, y, z], axis=1))
