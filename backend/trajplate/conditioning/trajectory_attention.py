"""Shot → Trajectory Attention inputs: exact scene-flow pixel tracks of the first frame (specs/pipelines.md §2.3).

The authors estimate these tracks (Depth-Anything depth + a guessed camera, or CoTracker) and warn that errors
propagate; a shot has them exactly. Every query pixel of the first frame is unprojected with the exported planar depth
and K, attached to its entity (instance mask) or to the static background, moved with that entity's exported world
transform (rigid, scale included) and projected with each frame's camera. Camera-only and object-only shots are the
same computation (an identity motion for the background, a fixed camera).

Conventions: world = Blender world, metres; cameras ``camera_w2c_opencv`` (x right, y down, z forward) and ``K`` in
shot pixels; pixel coordinates x right, y down, origin at the top-left image *corner*, pixel centres at +0.5. Tracks
are returned in the *target* frame (the first frame resized to ``size`` without crop, as the authors do), so a shot
pixel ``u`` maps to ``u · W_target / W_shot``.

Query grid: the authors' CoTracker grid (8-px cells over 1024×576, uniform jitter within the cell, 4 draws →
36,864 tracks). Each query is snapped to the centre of the shot pixel it falls in, because that is where the exported
depth is exact; the snapped position is the track's frame-0 coordinate.

Time map (``time_map = "sample"`` in the preset): generated frame ``j`` of ``T`` stands for the shot time
``t_0 + j · (t_end − t_0) / (T − 1)`` and uses the exported frame nearest to it, so the whole shot is spread over the
25 generated frames and every pose used is an exported (exact) one; ``shot_frames`` reports the Blender frame used.

Validity at frame t (all vectorised over tracks):
* in front of the camera (camera z > 0) and inside the image;
* not occluded: the point's camera depth is at most the largest exported depth of the pixel centres around its
  projection that have a non-zero bilinear weight (× (1 + ``depth_rtol``) + ``depth_atol``). For a planar surface
  the depth between pixel centres lies between their min and max (inverse depth is affine in the image), so visible
  surface points pass exactly and occluded ones fail by the occluder's depth gap;
* when instance masks are exported, the pixel the point falls in must carry the point's own entity id (0:
  background) — an exact occlusion test between entities that an estimated pipeline cannot have. Near a silhouette
  this errs towards invalid, never towards attending to the occluder.
Background pixels with infinite depth (no geometry) are points at infinity: homogeneous w = 0, moved by camera
rotation only, visible where the exported depth is infinite too.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..pipelines.base import PipelineInputError

if TYPE_CHECKING:
    from ..shot import Shot

NATIVE_SIZE = (1024, 576)
"""(W, H) of the authors' trajectory frame and of SVD-XT's output."""
NUM_FRAMES = 25
GRID_STEP = 8
GRID_DRAWS = 4
COORDS_FILE = "trans_coordinates.npy"
VALID_FILE = "trans_valid.npy"


@dataclass(frozen=True)
class Tracks:
    """Pixel trajectories in the authors' layout.

    coords: (T, N, 2) float32, (x, y) pixels in a ``size`` = (W, H) frame, pixel-corner convention; frame 0 holds the
        query positions. valid: (T, N) bool, visible at that frame. entity: (N,) int16 entity id per track (0 static
        background), or None when the tracks came from elsewhere (the authors' files).
    """

    coords: np.ndarray
    valid: np.ndarray
    size: tuple[int, int]
    entity: np.ndarray | None = None

    @property
    def num_frames(self) -> int:
        return self.coords.shape[0]

    @property
    def num_tracks(self) -> int:
        return self.coords.shape[1]


def time_map(time_s: np.ndarray, num_frames: int = NUM_FRAMES) -> np.ndarray:
    """Indices (T,) int64 into the shot's frame axis for ``T = num_frames`` generated frames (module docstring).

    time_s: (F,) float64 seconds from the first exported frame, non-decreasing.
    """
    time_s = np.asarray(time_s, dtype=np.float64)
    if len(time_s) == 1:
        return np.zeros(num_frames, dtype=np.int64)
    wanted = np.linspace(time_s[0], time_s[-1], num_frames)
    right = np.clip(np.searchsorted(time_s, wanted), 1, len(time_s) - 1)
    left = right - 1
    return np.where(wanted - time_s[left] <= time_s[right] - wanted, left, right).astype(np.int64)


def grid_queries(size: tuple[int, int], *, step: int = GRID_STEP, draws: int = GRID_DRAWS,
                 rng: np.random.Generator) -> np.ndarray:
    """The authors' query grid: (draws · ⌈H/step⌉ · ⌈W/step⌉, 2) float64 (x, y) in a ``size`` = (W, H) frame.

    One query per ``step``-pixel cell, placed uniformly at random inside the cell (their ±step/2 jitter), ``draws``
    independent draws; row-major per draw. Positions stay inside the image.
    """
    width, height = size
    ys, xs = np.meshgrid(np.arange(0, height, step, dtype=np.float64), np.arange(0, width, step, dtype=np.float64),
                         indexing="ij")
    cells = np.stack([xs.ravel(), ys.ravel()], axis=-1)
    points = cells[None] + rng.uniform(0.0, step, size=(draws, *cells.shape))
    points = np.minimum(points, np.array([width, height], dtype=np.float64) - 1e-3)
    return points.reshape(-1, 2)


def scene_flow_tracks(
    pixels: np.ndarray,
    depth: np.ndarray,
    instance_mask: np.ndarray | None,
    intrinsics: np.ndarray,
    w2c: np.ndarray,
    entity_world: np.ndarray,
    *,
    depth_rtol: float = 1e-3,
    depth_atol: float = 1e-3,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact scene-flow tracks of first-frame pixels, in shot pixels.

    pixels: (P, 2) int (column, row) of frame-0 pixels; each track starts at that pixel's centre (col + .5, row + .5).
    depth: (T, H, W) float32 planar camera z, metres, ``inf`` where there is no geometry; frame 0 unprojects.
    instance_mask: (T, H, W) uint8 entity id per pixel (0 background) or None (then every point is background,
        allowed only when there are no entities).
    intrinsics: (T, 3, 3) float64 K in shot pixels. w2c: (T, 4, 4) float64 world-to-camera, OpenCV axes, metres.
    entity_world: (T, N, 4, 4) float64 object-to-world per entity (column k is entity id k + 1).

    Returns ``(coords (T, P, 2) float32 shot pixels, valid (T, P) bool, entity (P,) int16)``, tracks grouped by
    entity id (stable within an entity); see the module docstring for validity. Points behind the camera get finite
    placeholder coordinates and are invalid. Raises :class:`PipelineInputError` when masks are missing for a shot
    with entities or an entity transform is singular.
    """
    frames, height, width = depth.shape
    num_entities = entity_world.shape[1]
    cols, rows = pixels[:, 0].astype(np.int64), pixels[:, 1].astype(np.int64)
    z0 = depth[0, rows, cols].astype(np.float64)
    at_infinity = ~np.isfinite(z0)
    if instance_mask is None:
        if num_entities:
            raise PipelineInputError("instance_mask: the shot has entities but no instance masks; re-export the "
                                     "bundle with masks enabled so tracks can follow the entities")
        entity = np.zeros(len(pixels), dtype=np.int16)
    else:
        entity = np.where(at_infinity, 0, instance_mask[0, rows, cols]).astype(np.int16)
    # Tracks grouped by entity (their order carries no meaning): each entity is then one contiguous matmul.
    order = np.argsort(entity, kind="stable")
    cols, rows, z0, at_infinity, entity = cols[order], rows[order], z0[order], at_infinity[order], entity[order]
    bounds = np.searchsorted(entity, np.arange(num_entities + 2))

    # Frame-0 camera rays, then world points (homogeneous; w = 0 for points at infinity).
    homog = np.stack([cols + 0.5, rows + 0.5, np.ones(len(pixels))])
    rays = np.linalg.solve(intrinsics[0], homog)
    cam = np.concatenate([rays * np.where(at_infinity, 1.0, z0), (~at_infinity)[None].astype(np.float64)])
    world = np.linalg.inv(w2c[0]) @ cam

    # Per entity: x_t = K_t · [I|0] · w2c_t · world_t · world_0⁻¹ · X; id 0 (background) does not move.
    try:
        motion = entity_world @ np.linalg.inv(entity_world[0])[None]
    except np.linalg.LinAlgError as exc:
        raise PipelineInputError("entity_world: an entity has a singular transform (zero scale) on the first "
                                 "frame; give every entity a non-zero scale") from exc
    motion = np.concatenate([np.broadcast_to(np.eye(4), (frames, 1, 4, 4)), motion], axis=1)
    project = intrinsics[:, None] @ (w2c[:, None, :3] @ motion)  # (T, N+1, 3, 4)
    proj = np.empty((frames, 3, len(pixels)))
    for k in range(num_entities + 1):  # a loop over entities, never over tracks
        proj[:, :, bounds[k]:bounds[k + 1]] = project[:, k] @ world[:, bounds[k]:bounds[k + 1]]

    z = proj[:, 2]
    in_front = z > 1e-9
    inv_z = 1.0 / np.where(in_front, z, 1.0)
    coords = np.empty((frames, len(pixels), 2), dtype=np.float32)
    u, v = coords[..., 0], coords[..., 1]
    np.multiply(proj[:, 0], inv_z, out=u, casting="same_kind")
    np.multiply(proj[:, 1], inv_z, out=v, casting="same_kind")
    inside = in_front & (u >= 0) & (u < width) & (v >= 0) & (v < height)

    # Pixel centres around (u, v) with a non-zero bilinear weight (1, 2 or 4 of them), clamped at the border;
    # gathered through flat indices (much faster than 3-axis fancy indexing).
    x, y = u - 0.5, v - 0.5
    c0 = np.minimum(np.maximum(np.floor(x), 0), width - 1).astype(np.int64)
    r0 = np.minimum(np.maximum(np.floor(y), 0), height - 1).astype(np.int64)
    c1 = np.minimum(c0 + (x > c0), width - 1)
    r1 = np.minimum(r0 + (y > r0), height - 1)
    base = (np.arange(frames, dtype=np.int64) * (height * width))[:, None]
    row0, row1 = base + r0 * width, base + r1 * width
    flat = depth.reshape(-1)
    far = np.maximum(np.maximum(flat[row0 + c0], flat[row0 + c1]), np.maximum(flat[row1 + c0], flat[row1 + c1]))
    point_z = np.where(at_infinity[None], np.inf, z)
    valid = inside & (point_z <= far.astype(np.float64) * (1.0 + depth_rtol) + depth_atol)
    if instance_mask is not None:  # the pixel the point falls in must show its own entity
        col = np.minimum(np.maximum(np.floor(u), 0), width - 1).astype(np.int64)
        row = np.minimum(np.maximum(np.floor(v), 0), height - 1).astype(np.int64)
        valid &= instance_mask.reshape(-1)[base + row * width + col] == entity[None]

    coords[0] = np.stack([cols + 0.5, rows + 0.5], axis=-1)
    valid[0] = True
    return coords, valid, entity


def shot_tracks(
    shot: Shot,
    size: tuple[int, int] = NATIVE_SIZE,
    *,
    num_frames: int = NUM_FRAMES,
    step: int = GRID_STEP,
    draws: int = GRID_DRAWS,
    seed: int = 0,
) -> tuple[Tracks, np.ndarray]:
    """The shot's exact tracks on the authors' query grid, in a ``size`` = (W, H) frame.

    Returns ``(tracks, shot_frames)``: ``tracks`` with ``num_frames`` frames (time map in the module docstring) and
    ``shot_frames`` (T,) float64, the Blender frame each generated frame stands for. The jitter is drawn from
    ``seed``. Raises :class:`PipelineInputError` naming the missing field (depth pass, instance masks).
    """
    if shot.depth is None:
        raise PipelineInputError("depth: the bundle has no depth pass; re-export with depth enabled (the tracks are "
                                 "unprojected with the exact depth)")
    index = time_map(shot.time_s, num_frames)
    queries = grid_queries(size, step=step, draws=draws, rng=np.random.default_rng(seed))
    scale = np.array([shot.width / size[0], shot.height / size[1]])
    pixels = np.minimum(np.floor(queries * scale).astype(np.int64), [shot.width - 1, shot.height - 1])
    mask = None if shot.instance_mask is None else shot.instance_mask[index]
    coords, valid, entity = scene_flow_tracks(
        pixels, shot.depth[index], mask, shot.intrinsics[index], shot.camera_w2c_opencv[index],
        shot.entity_world[index],
    )
    coords /= scale.astype(np.float32)
    return Tracks(coords, valid, tuple(size), entity), shot.frame_numbers[index].astype(np.float64)


def load_authors_tracks(folder: Path, *, num_frames: int = NUM_FRAMES) -> Tracks:
    """Read the authors' track files (``trans_coordinates.npy``, ``trans_valid.npy``) from ``folder``.

    Like their loader, both arrays are reshaped to ``(num_frames, -1, ·)``: coordinates (x, y) in the 1024×576 frame.
    Raises :class:`PipelineInputError` naming the file when one is missing, unreadable, non-finite or of a size that
    does not split into ``num_frames`` frames or disagrees with the other file.
    """
    folder = Path(folder)
    arrays = {}
    for name in (COORDS_FILE, VALID_FILE):
        path = folder / name
        try:
            arrays[name] = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise PipelineInputError(f"{name}: cannot read {path} ({exc}); give a folder holding the authors' "
                                     f"{COORDS_FILE} and {VALID_FILE}") from exc
    coords, valid = arrays[COORDS_FILE], arrays[VALID_FILE]
    if coords.size % (2 * num_frames) or valid.size % num_frames:
        raise PipelineInputError(f"{COORDS_FILE}/{VALID_FILE}: sizes {coords.shape}/{valid.shape} do not reshape to "
                                 f"({num_frames}, N, 2)/({num_frames}, N); the model needs exactly {num_frames} frames")
    coords = coords.reshape(num_frames, -1, 2).astype(np.float32)
    valid = valid.reshape(num_frames, -1).astype(bool)
    if coords.shape[1] != valid.shape[1]:
        raise PipelineInputError(f"{VALID_FILE}: {valid.shape[1]} tracks but {COORDS_FILE} has {coords.shape[1]}")
    if not np.isfinite(coords).all():
        raise PipelineInputError(f"{COORDS_FILE}: contains NaN or inf; mark such points invalid and give any finite "
                                 "coordinate instead")
    return Tracks(coords, valid, NATIVE_SIZE)


def save_authors_tracks(tracks: Tracks, folder: Path) -> None:
    """Write ``tracks`` as the authors' two files (coordinates rescaled to their 1024×576 frame)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    scale = np.array(NATIVE_SIZE, dtype=np.float64) / np.array(tracks.size, dtype=np.float64)
    np.save(folder / COORDS_FILE, (tracks.coords * scale).astype(np.float32))
    np.save(folder / VALID_FILE, tracks.valid)


def draw_preview(first_frame: np.ndarray, tracks: Tracks, *, max_tracks: int = 400, trail: int = 6,
                 seed: int = 0) -> np.ndarray:
    """The control preview: a subset of the tracks drawn over the first frame, one image per generated frame.

    first_frame: (H, W, 3) uint8 RGB at any size (tracks are rescaled to it). Returns (T, H, W, 3) uint8: at frame t
    each visible track is a dot with its last ``trail`` positions as a line, coloured by entity (background grey).
    """
    import cv2

    height, width = first_frame.shape[:2]
    rng = np.random.default_rng(seed)
    pick = rng.choice(tracks.num_tracks, size=min(max_tracks, tracks.num_tracks), replace=False)
    scale = np.array([width / tracks.size[0], height / tracks.size[1]])
    # OpenCV draws with integer pixel centres: subtract 0.5 from our pixel-corner coordinates here.
    points = np.round(tracks.coords[:, pick] * scale - 0.5).astype(np.int32)
    valid = tracks.valid[:, pick]
    ids = np.zeros(len(pick), np.int64) if tracks.entity is None else tracks.entity[pick].astype(np.int64)
    palette = np.array([(160, 160, 160), (230, 60, 60), (60, 200, 90), (70, 120, 240), (240, 200, 40),
                        (200, 80, 220), (40, 210, 220)], dtype=np.int64)
    colours = palette[np.where(ids == 0, 0, (ids - 1) % (len(palette) - 1) + 1)]
    out = np.empty((tracks.num_frames, height, width, 3), dtype=np.uint8)
    for t in range(tracks.num_frames):  # per frame drawing; the track loop is OpenCV's polylines
        canvas = (first_frame // 2).copy()
        start = max(0, t - trail)
        seen = valid[start:t + 1].all(axis=0)
        for colour in np.unique(colours, axis=0):
            chosen = seen & (colours == colour).all(axis=1)
            if not chosen.any():
                continue
            lines = np.ascontiguousarray(np.swapaxes(points[start:t + 1, chosen], 0, 1))
            cv2.polylines(canvas, list(lines), False, tuple(int(c) for c in colour), 1, cv2.LINE_AA)
            for x, y in points[t, chosen]:
                cv2.circle(canvas, (int(x), int(y)), 2, tuple(int(c) for c in colour), -1, cv2.LINE_AA)
        out[t] = canvas
    return out
