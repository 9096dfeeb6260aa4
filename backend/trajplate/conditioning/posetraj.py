"""Shot → PoseTraj inputs: sparse drag tracks drawn as the authors' trajectory maps, and camera vectors (§3.2).

Tracks. The authors drag a few CoTracker points per object; a shot has them exactly. Per entity: its origin
(``track_2d``, valid where ``track_visible``: in front, inside the image and not occluded) plus ``surface_points``
points of its evaluated surface picked on the first frame's instance mask (the mask pixels furthest from the mask
centroid in evenly spaced directions, pulled a quarter of the way back towards it so they sit inside the silhouette),
unprojected with the exact depth and moved rigidly with the entity (:func:`~.trajectory_attention.scene_flow_tracks`,
whose depth + instance-mask test makes them visibility-aware). Without depth or masks only the origins are used.

Coordinates: shot pixels, x right, y down, origin at the top-left image *corner*, pixel centres at +0.5; rescaled to
the target (576×320 native) by ``x · W_t / W``, ``y · H_t / H`` (the authors' rule, without their truncation of
already-integer coordinates). OpenCV draws on integer pixel indices: a point is drawn at the pixel that contains it,
``floor`` of its corner coordinate — that is the −0.5 shift to OpenCV's integer pixel centres, rounded.

Maps (what the ControlNet sees): T RGB images, black background; map ``i < T − 1`` holds, for every track, the
segment from its point ``i`` to point ``i + 1`` (red, thickness 3, ``cv2.line``) and a filled green dot of radius 3
at point ``i + 1``; map ``T − 1`` is black. Maps are per step, not cumulative. A segment is drawn only when both its
ends are valid (the authors draw every CoTracker point, visible or not; a shot knows visibility exactly). Tracks are
drawn in track order, so a later track's line covers an earlier track's dot, as in the authors' loop. We draw red
always (the authors' inference does; their training loader alternated red/blue, see docs/pipelines/posetraj.md).

Time map (preset ``time_map = "sample"``): generated frame ``j`` of ``T = 14`` uses the exported frame nearest to shot
time ``t_0 + j · (t_end − t_0) / (T − 1)`` (:func:`~.trajectory_attention.time_map`, shared).

Camera (camera ControlNet only): per generated frame the 12-vector ``[R (row-major 9), t (3)]`` of the camera motion
relative to the first generated frame, ``w2c_j · w2c_0⁻¹`` in OpenCV axes, metres, minus the first frame's vector (the
authors subtract frame 0; a static camera gives all zeros, what their inference script passes). The authors' TRAM
convention is unverified (spec §3.2); this is the convention every checkpoint trained here uses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..pipelines.base import PipelineInputError
from .trajectory_attention import scene_flow_tracks, time_map

if TYPE_CHECKING:
    from ..shot import Shot

NATIVE_SIZE = (576, 320)
"""(W, H) of SVD img2vid and of the authors' maps."""
NUM_FRAMES = 14
SURFACE_POINTS = 4
LINE_RGB = (255, 0, 0)
DOT_RGB = (0, 255, 0)
THICKNESS = 3
DOT_RADIUS = 3


@dataclass(frozen=True)
class DragTracks:
    """coords (T, N, 2) float64 (x, y) pixels of a ``size`` = (W, H) frame, pixel-corner convention; valid (T, N)
    bool; entity (N,) int16 entity id per track (1-based)."""

    coords: np.ndarray
    valid: np.ndarray
    size: tuple[int, int]
    entity: np.ndarray

    def rescaled(self, size: tuple[int, int]) -> DragTracks:
        """The same tracks in a ``size`` frame: x · W'/W, y · H'/H (no crop, as the authors resize)."""
        scale = np.array(size, dtype=np.float64) / np.array(self.size, dtype=np.float64)
        return DragTracks(self.coords * scale, self.valid, tuple(size), self.entity)


def surface_pixels(mask: np.ndarray, entity_id: int, count: int = SURFACE_POINTS) -> np.ndarray:
    """``count`` (column, row) int64 pixels inside ``mask == entity_id`` ((H, W) uint8), spread over its extent.

    Returns (≤ count, 2); empty when the entity is not in the mask. Each point is the mask pixel furthest from the
    centroid along direction k·2π/count (x right, y down), moved a quarter of the way back to the centroid and snapped
    to the nearest mask pixel.
    """
    rows, cols = np.nonzero(mask == entity_id)
    if len(rows) == 0:
        return np.zeros((0, 2), dtype=np.int64)
    pixels = np.stack([cols, rows], axis=-1).astype(np.float64) + 0.5
    centre = pixels.mean(axis=0)
    angles = np.arange(count) * (2.0 * np.pi / count)
    directions = np.stack([np.cos(angles), np.sin(angles)], axis=-1)
    extreme = pixels[np.argmax((pixels - centre) @ directions.T, axis=0)]
    wanted = extreme + 0.25 * (centre - extreme)
    nearest = np.argmin(((pixels[None] - wanted[:, None]) ** 2).sum(-1), axis=1)
    return np.unique(np.stack([cols[nearest], rows[nearest]], axis=-1), axis=0).astype(np.int64)


def shot_tracks(shot: Shot, *, num_frames: int = NUM_FRAMES,
                surface_points: int = SURFACE_POINTS) -> tuple[DragTracks, np.ndarray]:
    """The shot's drag tracks in shot pixels and ``shot_frames`` (T,) float64 Blender frames (module docstring).

    Raises :class:`PipelineInputError` when the shot has no entity or no entity is visible on the first frame.
    """
    if shot.num_entities == 0:
        raise PipelineInputError("entities: PoseTraj drags entities, but the shot has none; add a keyframed entity")
    index = time_map(shot.time_s, num_frames)
    coords = [shot.track_2d[index]]
    valid = [shot.track_visible[index]]
    entity = [np.arange(1, shot.num_entities + 1, dtype=np.int16)]
    if surface_points and shot.depth is not None and shot.instance_mask is not None:
        first_mask = shot.instance_mask[index[0]]
        pixels = [surface_pixels(first_mask, k, surface_points) for k in range(1, shot.num_entities + 1)]
        pixels = np.concatenate(pixels)
        if len(pixels):
            surf, surf_valid, surf_entity = scene_flow_tracks(
                pixels, shot.depth[index], shot.instance_mask[index], shot.intrinsics[index],
                shot.camera_w2c_opencv[index], shot.entity_world[index])
            coords.append(surf.astype(np.float64))
            valid.append(surf_valid)
            entity.append(surf_entity)
    tracks = DragTracks(np.concatenate(coords, axis=1), np.concatenate(valid, axis=1), (shot.width, shot.height),
                        np.concatenate(entity))
    if not tracks.valid[0].any():
        raise PipelineInputError("track_visible: no entity is visible on the first frame; PoseTraj drags what the "
                                 "first frame shows — start the shot with an entity in view")
    return tracks, shot.frame_numbers[index].astype(np.float64)


def _cv_points(coords: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Pixel-corner coordinates → OpenCV integer pixel indices (the pixel containing the point), clipped far outside
    the image so OpenCV's int32 arithmetic cannot overflow (lines are clipped to the image anyway)."""
    limit = 4 * max(size)
    return np.clip(np.floor(coords), -limit, limit).astype(np.int32)


def rasterise(tracks: DragTracks) -> np.ndarray:
    """The authors' trajectory maps (module docstring): (T, H, W, 3) uint8 RGB at ``tracks.size``."""
    import cv2

    width, height = tracks.size
    points = _cv_points(tracks.coords, tracks.size)
    maps = np.zeros((tracks.coords.shape[0], height, width, 3), dtype=np.uint8)
    for i in range(len(maps) - 1):
        drawn = np.flatnonzero(tracks.valid[i] & tracks.valid[i + 1])
        for n in drawn:  # per track: line then dot, in track order (the authors' overdraw)
            start, end = tuple(int(v) for v in points[i, n]), tuple(int(v) for v in points[i + 1, n])
            cv2.line(maps[i], start, end, LINE_RGB, THICKNESS)
            cv2.circle(maps[i], end, DOT_RADIUS, DOT_RGB, -1)
    return maps


def maps_to_tensor_range(maps: np.ndarray) -> np.ndarray:
    """(T, H, W, 3) uint8 → (T, 3, H, W) float32 in [−1, 1] (``VaeImageProcessor.preprocess``'s mapping)."""
    return (maps.astype(np.float32) / 127.5 - 1.0).transpose(0, 3, 1, 2)


def camera_vectors(w2c: np.ndarray) -> np.ndarray:
    """(T, 4, 4) float64 world-to-camera (OpenCV axes, metres) → (T, 12) float32 (module docstring convention)."""
    relative = w2c @ np.linalg.inv(w2c[0])
    vectors = np.concatenate([relative[:, :3, :3].reshape(len(w2c), 9), relative[:, :3, 3]], axis=1)
    return (vectors - vectors[0]).astype(np.float32)


def shot_camera(shot: Shot, *, num_frames: int = NUM_FRAMES) -> np.ndarray:
    """(T, 12) float32 camera vectors of the shot at the generated frames."""
    return camera_vectors(shot.camera_w2c_opencv[time_map(shot.time_s, num_frames)])


def draw_preview(first_frame: np.ndarray, maps: np.ndarray) -> np.ndarray:
    """Control preview: each map over the darkened first frame. first_frame (H, W, 3) uint8 at any size; maps
    (T, h, w, 3) uint8. Returns (T, H, W, 3) uint8 at the first frame's size."""
    import cv2

    height, width = first_frame.shape[:2]
    out = np.empty((len(maps), height, width, 3), dtype=np.uint8)
    for t, image in enumerate(maps):
        image = cv2.resize(image, (width, height), interpolation=cv2.INTER_NEAREST)
        out[t] = np.where(image.any(axis=-1, keepdims=True), image, first_frame // 2)
    return out
