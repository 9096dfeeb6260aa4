"""Shot -> MagicMotion's native inputs: the first frame and the trajectory-map video (specs/pipelines.md §5.2).

MagicMotion animates a first frame so that objects follow a colour-coded *trajectory map*: a 49-frame RGB video at
480×720 on a black background, VAE-encoded beside the noisy latents. The authors build it with SAM2 + Grounding DINO;
TrajPlate draws it from the export's exact instance masks and boxes, in the authors' drawing conventions:

* colours: supervision's ``MaskAnnotator`` defaults — colour by class id from ``ColorPalette.DEFAULT`` (entity id
  *k* is class id *k*), composited at opacity 0.5 over black with ``cv2.addWeighted`` (so entity 1 is
  ``(128, 32, 32)``). Boxes reuse that exact colour.
* ``mask`` (stage 1): every frame holds the filled instance masks.
* ``box`` (stage 2): frame 0 holds the filled masks; frames 1..T-1 hold box outlines (``cv2.rectangle``, thickness
  ``min(H, W) // 100``), drawn in the order the colours first occur in the frame-0 map (raster scan), as the authors'
  ``plan_box.py`` does.
* ``sparse_box`` (stage 3): frame 0 masks; outlines only on the key frames (at most 10), every other frame black.

Box corners: each edge of ``box_2d`` (pixel-corner coordinates, float) goes to the OpenCV point (integer pixel
centres) nearest to it, ``round(x - 0.5)`` = ``floor(x)`` — DESIGN's 0.5 shift at the OpenCV boundary — so every
outline is centred within half a pixel of the exact edge. For a pixel-aligned box this is exactly the authors'
rectangle of a mask: ``cv2.boundingRect`` gives ``(x, y, w, h)`` and they draw from ``(x, y)`` to ``(x + w, y + h)``.

Boxes come from ``box_2d`` (the projected geometry, so a box keeps moving while its entity is occluded); masks come
from ``instance_mask`` (visible pixels). Both are exact, not estimated.

Time map (``sample``): generated frame ``j`` of ``T`` shows exported frame index ``floor(j·(F−1)/(T−1) + 0.5)`` — the
nearest exported frame to an even spread over the shot's frame range; nothing is interpolated (masks cannot be), so
a shot with fewer than ``T`` frames holds frames. ``shot_frames`` records the Blender frame each generated frame shows.

Sizes: masks are resized to the target size with nearest-neighbour sampling and boxes are scaled by the size ratio
(the authors simply resize, no crop); the first frame is resized with PIL's Lanczos filter, which is what diffusers'
``VideoProcessor.preprocess`` does inside their pipeline.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import cv2
import numpy as np
from PIL import Image

from ..pipelines.base import PipelineInputError

if TYPE_CHECKING:
    from ..shot import Shot

Mode = Literal["mask", "box", "sparse_box"]
MODES: tuple[str, ...] = ("mask", "box", "sparse_box")

# supervision 0.23 ``ColorPalette.DEFAULT`` (the annotator colours by ``class_id % len(palette)``).
PALETTE_HEX: tuple[str, ...] = (
    "A351FB", "FF4040", "FFA1A0", "FF7633", "FFB633", "D1D435", "4CFB12", "94CF1A", "40DE8A", "1B9640", "00D6C1",
    "2E9CAA", "00C4FF", "364797", "6675FF", "0019EF", "863AFF", "530087", "CD3AFF", "FF97CA", "FF39C9",
)
MAX_ENTITY_ID = len(PALETTE_HEX)  # ids 1..21 get distinct colours; id 22 would reuse entity 1's
MAX_KEY_FRAMES = 10  # the authors' guidance (issue #3): sparse boxes on fewer than 10 frames
OPACITY = 0.5


def palette_rgb(entity_id: int) -> tuple[int, int, int]:
    """Full-strength palette colour (R, G, B) 0–255 of ``entity_id`` (class id). Raises PipelineInputError past 21."""
    if not 1 <= entity_id <= MAX_ENTITY_ID:
        raise PipelineInputError(
            f"entities: entity id {entity_id} has no colour of its own; MagicMotion tells objects apart by the "
            f"authors' {MAX_ENTITY_ID}-colour palette (ids 1..{MAX_ENTITY_ID}). Fix: keep at most {MAX_ENTITY_ID} "
            "entities in the shot, or pick the ones to animate with options.entities."
        )
    h = PALETTE_HEX[entity_id % len(PALETTE_HEX)]
    return int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16)


def map_rgb(entity_id: int) -> tuple[int, int, int]:
    """The colour entity ``entity_id`` has in the trajectory map: its palette colour at 50 % over black (cv2 rounding)."""
    full = np.array([[palette_rgb(entity_id)]], dtype=np.uint8)
    half = cv2.addWeighted(full, OPACITY, np.zeros_like(full), 1.0 - OPACITY, 0.0)
    return tuple(int(v) for v in half[0, 0])


def time_map(num_shot_frames: int, num_frames: int) -> np.ndarray:
    """(num_frames,) int64 indices into the shot's exported frames, one per generated frame (see module doc)."""
    if num_shot_frames < 1:
        raise PipelineInputError("frames: the shot has no exported frames; export at least one frame")
    if num_frames == 1:
        return np.zeros(1, dtype=np.int64)
    j = np.arange(num_frames, dtype=np.float64)
    return np.floor(j * (num_shot_frames - 1) / (num_frames - 1) + 0.5).astype(np.int64)


def key_frames_to_indices(
    key_frames: Sequence[int], frame_numbers: np.ndarray, sampled: np.ndarray
) -> list[int]:
    """Blender frame numbers -> generated-frame indices (sorted, unique) whose sampled shot frame is nearest.

    frame_numbers: (F,) int Blender frames exported; sampled: (T,) indices from :func:`time_map`.
    Raises PipelineInputError for a frame outside the exported range, the first frame (it always carries the masks),
    or more than 10 distinct key frames.
    """
    first, last = int(frame_numbers[0]), int(frame_numbers[-1])
    shown = frame_numbers[sampled].astype(np.float64)
    out: set[int] = set()
    for f in key_frames:
        if not first <= f <= last:
            raise PipelineInputError(
                f"options.key_frames: frame {f} is outside the shot's exported range {first}..{last}. "
                "Fix: choose key frames inside the frame range."
            )
        j = int(np.argmin(np.abs(shown - f)))
        if j == 0:
            raise PipelineInputError(
                f"options.key_frames: frame {f} falls on the first generated frame, which always carries the masks. "
                f"Fix: choose key frames after frame {int(shown[0])}."
            )
        out.add(j)
    if len(out) > MAX_KEY_FRAMES:
        raise PipelineInputError(
            f"options.key_frames: {len(out)} distinct key frames; MagicMotion's sparse-box model was trained with "
            f"fewer than {MAX_KEY_FRAMES + 1}. Fix: keep at most {MAX_KEY_FRAMES}, or use the 'box' variant."
        )
    return sorted(out)


def resize_mask(instance_mask: np.ndarray, height: int, width: int) -> np.ndarray:
    """(h, w) uint8 entity ids -> (height, width) uint8, nearest neighbour (ids are labels, not intensities)."""
    if instance_mask.shape == (height, width):
        return instance_mask
    return cv2.resize(instance_mask, (width, height), interpolation=cv2.INTER_NEAREST)


def draw_masks(mask: np.ndarray, entity_ids: Sequence[int]) -> np.ndarray:
    """Filled masks as the authors' ``MaskAnnotator`` draws them over a black frame.

    mask: (H, W) uint8 entity id per pixel (0 background). Returns (H, W, 3) uint8 RGB. Instance masks never overlap,
    so supervision's larger-first drawing order changes nothing here.
    """
    colored = np.zeros((*mask.shape, 3), dtype=np.uint8)
    for eid in entity_ids:
        colored[mask == eid] = palette_rgb(eid)
    return cv2.addWeighted(colored, OPACITY, np.zeros_like(colored), 1.0 - OPACITY, 0.0)


def box_corners(box: np.ndarray) -> tuple[tuple[int, int], tuple[int, int]]:
    """x0, y0, x1, y1 (pixel-corner coordinates) -> OpenCV rectangle points: the pixel centre nearest each edge."""
    x0, y0, x1, y1 = (math.floor(float(v)) for v in box)
    return (x0, y0), (x1, y1)


def draw_boxes(
    boxes: np.ndarray, valid: np.ndarray, entity_ids: Sequence[int], height: int, width: int
) -> np.ndarray:
    """Box outlines on black, in the given entity order (later ones on top).

    boxes: (n, 4) float x0, y0, x1, y1 in target pixels; valid: (n,) bool; entity_ids: n ids. Returns (H, W, 3) uint8.
    """
    frame = np.zeros((height, width, 3), dtype=np.uint8)
    thickness = min(height, width) // 100
    for box, ok, eid in zip(boxes, valid, entity_ids, strict=True):
        if ok:
            p0, p1 = box_corners(box)
            cv2.rectangle(frame, p0, p1, map_rgb(eid), thickness=thickness)
    return frame


def raster_order(mask: np.ndarray, entity_ids: Sequence[int]) -> list[int]:
    """Entity ids ordered by their first pixel in a raster scan of ``mask`` (H, W) uint8 — the authors' box order."""
    flat = mask.ravel()
    first = {eid: int(np.flatnonzero(flat == eid)[0]) for eid in entity_ids}
    return sorted(entity_ids, key=first.__getitem__)


@dataclass
class MagicMotionConditioning:
    """Native inputs of one MagicMotion job.

    first_frame: (H, W, 3) uint8 RGB, resized to the target size. trajectory_map: (T, H, W, 3) uint8 RGB.
    shot_indices: (T,) int64 exported-frame index shown by each generated frame; shot_frames: (T,) float64 Blender
    frame numbers of those. entity_ids: the entities drawn; key_frames: generated-frame indices with boxes (sparse).
    """

    first_frame: np.ndarray
    trajectory_map: np.ndarray
    shot_indices: np.ndarray
    shot_frames: np.ndarray
    mode: Mode
    entity_ids: list[int]
    key_frames: list[int]


def _select_entities(shot: Shot, entities: Sequence[int] | None) -> list[int]:
    all_ids = list(range(1, shot.num_entities + 1))
    if entities is None:
        chosen = all_ids
    else:
        unknown = sorted(set(entities) - set(all_ids))
        if unknown:
            raise PipelineInputError(
                f"options.entities: unknown entity id(s) {unknown}; the shot has ids 1..{shot.num_entities}."
            )
        chosen = sorted(set(entities))
    if not chosen:
        raise PipelineInputError("entities: the shot has no entity to animate. Fix: add at least one entity.")
    for eid in chosen:
        palette_rgb(eid)
    return chosen


def _entity_name(shot: Shot, eid: int) -> str:
    return f"{shot.meta.entities[eid - 1].name!r} (id {eid})"


def build_conditioning(
    shot: Shot,
    mode: Mode,
    *,
    height: int = 480,
    width: int = 720,
    num_frames: int = 49,
    key_frames: Sequence[int] | None = None,
    entities: Sequence[int] | None = None,
) -> MagicMotionConditioning:
    """Draw the trajectory map and resize the first frame (see the module doc for every convention).

    mode: ``mask`` | ``box`` | ``sparse_box``; height/width/num_frames: the generated video's size (480, 720, 49
    natively); key_frames: Blender frame numbers carrying boxes in ``sparse_box`` mode (default: the second and the
    last generated frame, as in the authors' demos); entities: ids to animate (default all).

    Raises PipelineInputError (message names the field and the fix) when the shot has no instance masks, an entity
    never appears, an entity is missing from the first frame, there are more entities than palette colours, or a key
    frame is outside the shot.
    """
    if mode not in MODES:
        raise PipelineInputError(f"variant: {mode!r} is not a MagicMotion mode; valid: {', '.join(MODES)}")
    if shot.instance_mask is None:
        raise PipelineInputError(
            "instance_mask: the bundle has no instance masks, and MagicMotion's first trajectory frame is the objects' "
            "filled masks. Fix: re-export the shot with the instance-mask pass enabled."
        )
    ids = _select_entities(shot, entities)
    sampled = time_map(shot.num_frames, num_frames)
    sx, sy = width / shot.width, height / shot.height

    masks = [resize_mask(shot.instance_mask[i], height, width) for i in sampled]
    boxes = shot.box_2d[sampled][:, [e - 1 for e in ids]] * np.array([sx, sy, sx, sy])
    box_valid = shot.box_2d_valid[sampled][:, [e - 1 for e in ids]]
    for col, eid in enumerate(ids):
        if not box_valid[:, col].any() and not any((m == eid).any() for m in masks):
            raise PipelineInputError(
                f"entities: entity {_entity_name(shot, eid)} is never visible in the exported frames. Fix: move it "
                "into the camera's view, or leave it out with options.entities."
            )
        if not (masks[0] == eid).any():
            raise PipelineInputError(
                f"entities: entity {_entity_name(shot, eid)} has no pixels in the first frame; MagicMotion identifies "
                "each object by its colour in the first frame's mask. Fix: start the shot with it in view (and not "
                "hidden behind another object), or leave it out with options.entities."
            )

    key_idx: list[int] = []
    if mode == "sparse_box":
        key_idx = (
            key_frames_to_indices(key_frames, shot.frame_numbers, sampled)
            if key_frames is not None else sorted({1, num_frames - 1} - {0})
        )
    elif key_frames is not None:
        raise PipelineInputError(
            f"options.key_frames: only the 'sparse_box' variant uses key frames (this job uses {mode!r}). "
            "Fix: drop key_frames or choose variant 'sparse_box'."
        )

    order = raster_order(masks[0], ids)
    col_of = {eid: c for c, eid in enumerate(ids)}
    cols = [col_of[e] for e in order]
    video = np.zeros((num_frames, height, width, 3), dtype=np.uint8)
    video[0] = draw_masks(masks[0], ids)
    for j in range(1, num_frames):
        if mode == "mask":
            video[j] = draw_masks(masks[j], ids)
        elif mode == "box" or j in key_idx:
            video[j] = draw_boxes(boxes[j, cols], box_valid[j, cols], order, height, width)

    first = shot.first_frame
    if first.shape[:2] != (height, width):
        first = np.asarray(Image.fromarray(first).resize((width, height), resample=Image.Resampling.LANCZOS))
    return MagicMotionConditioning(
        first_frame=np.ascontiguousarray(first, dtype=np.uint8),
        trajectory_map=video,
        shot_indices=sampled,
        shot_frames=shot.frame_numbers[sampled].astype(np.float64),
        mode=mode,
        entity_ids=ids,
        key_frames=key_idx,
    )


def preview(cond: MagicMotionConditioning) -> np.ndarray:
    """The trajectory map drawn over the first frame the way MaskAnnotator blends: 50 % colour + 50 % frame.

    Returns (T, H, W, 3) uint8 RGB.
    """
    base = cond.first_frame.astype(np.uint16)
    drawn = cond.trajectory_map.any(axis=-1, keepdims=True)
    over = np.minimum(cond.trajectory_map.astype(np.uint16) + (base + 1) // 2, 255)
    return np.where(drawn, over, base[None]).astype(np.uint8)
