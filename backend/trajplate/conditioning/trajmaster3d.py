"""Shot → 3DTrajMaster's native inputs: per-entity 6-DoF poses at the latent frames, entity prompts, scene prompt.

Conventions (specs/pipelines.md §1.4):

* Pose frame: 3DTrajMaster's camera frame, **x right, y up, z forward** (depth > 0), metres — OpenCV camera axes with
  y flipped, ``S = diag(1, -1, 1)``. Poses come from ``shot.entity_cam_opencv`` (exact, scale removed).
* 12-vector: the top 3×4 ``[R | t]`` flattened **column-major**, ``[right, up, forward, t]``, where the rotation
  columns are the entity's own right / up / forward axes in that frame. Forward and up are the entity's exported
  local axes (``EntityMeta.forward_axis``/``up_axis``, default −Y / Z); right = forward × up, taken in the right-handed
  OpenCV frame before the flip, so det R = +1 as in the authors' data.
* Time map: the 49 generated frames sample the whole exported shot, generated frame ``j`` at shot frame index
  ``p_j = j · (F − 1) / 48`` (float). Poses follow the authors' rule on integer indices ``i_j = ⌊p_j⌋``: latent
  frame 0 takes ``i_0``, latent frame ``k ≥ 1`` the middle of its group of four, ``(i_{4k−3} + i_{4k}) // 2``.
  For the authors' 85 source frames this gives their frames 0, 4, 11, …, 81 (10, 14, 21, …, 91 with their start 10).
* Prompt: ``"<e1> is moving in the <loc>"`` or ``"<e1> and <e2> and <e3> are moving in the <loc>"``; captions
  lower-cased, stripped of surrounding blanks and a trailing period, as the authors' data loader does.

Everything here is NumPy; :func:`condition` raises :class:`~trajplate.pipelines.base.PipelineInputError` naming the
field and the fix, and returns warnings (not errors) where the shot is outside the training distribution.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np

from ..pipelines.base import PipelineInputError
from ..shot import Shot

MAX_ENTITIES = 3  # the authors' hard-coded max_entity_num (3DTrajMaster inference code, spec §1.3.4)
NATIVE_FRAMES = 49
TEMPORAL_COMPRESSION = 4  # CogVideoX VAE: 4 pixel frames per latent frame after the first
WORD_RANGE = (15, 24)  # the authors' README advice for entity captions
MAX_ENTITY_TOKENS = 50  # the injector keeps the first 50 T5 tokens of each entity caption
DISTANCE_RANGE_M = (3.0, 14.0)  # camera–entity distances of the 360Motion training data (3.06–13.39 m)
TRAINING_FOCAL_MM = 35.0  # Hemi12 rig: 35 mm lens on a 23.76 mm wide sensor, HFOV ≈ 37.5°
TRAINING_SENSOR_MM = 23.76
TRAINING_HFOV_DEG = 37.5
FOCAL_TOLERANCE = 0.25  # warn beyond ±25 % of the training focal length
TRAINING_ASPECT = 720 / 480
STATIC_CAMERA_TOL = (0.05, 1.0)  # metres, degrees: more camera motion than this is outside the (static) training rig

_S = np.diag([1.0, -1.0, 1.0])  # OpenCV camera axes → 3DTrajMaster's (y up)
_AXES = {"X": (1.0, 0, 0), "Y": (0, 1.0, 0), "Z": (0, 0, 1.0)}
_ARTICLES = ("the ", "a ", "an ")


def axis_vector(axis: str) -> np.ndarray:
    """``"X"``, ``"-Y"``, … → (3,) float64 unit vector in the entity's local frame. Raises ValueError otherwise."""
    sign, name = (-1.0, axis[1:]) if axis.startswith("-") else (1.0, axis)
    if name not in _AXES:
        raise ValueError(f"axis {axis!r}: expected one of X, -X, Y, -Y, Z, -Z")
    return sign * np.asarray(_AXES[name])


def generated_frame_positions(num_shot_frames: int, num_generated: int = NATIVE_FRAMES) -> np.ndarray:
    """(num_generated,) float64: the shot frame index (0-based, fractional) each generated frame stands for."""
    return np.linspace(0.0, num_shot_frames - 1, num_generated)


def latent_frame_indices(
    num_shot_frames: int, num_generated: int = NATIVE_FRAMES, temporal_compression: int = TEMPORAL_COMPRESSION
) -> np.ndarray:
    """((num_generated − 1) // temporal_compression + 1,) int64: shot frame index whose pose each latent frame gets.

    The authors' rule (module docstring); the 1e-9 guards ⌊·⌋ against positions like 2.9999999 that are integers.
    """
    frames = np.floor(generated_frame_positions(num_shot_frames, num_generated) + 1e-9).astype(np.int64)
    latents = (num_generated - 1) // temporal_compression + 1
    group_end = temporal_compression * np.arange(1, latents)
    middle = (frames[group_end - (temporal_compression - 1)] + frames[group_end]) // 2
    return np.concatenate([frames[:1], middle])


def poses_12(cam_opencv: np.ndarray, forward_axis: str, up_axis: str) -> np.ndarray:
    """Entity poses in the OpenCV camera frame → 3DTrajMaster 12-vectors.

    cam_opencv: (..., 4, 4) float64 entity-to-camera, OpenCV axes, metres, scale removed. forward_axis / up_axis:
    the entity's local axes (``"X"`` … ``"-Z"``). Returns (..., 12) float64 ``[right, up, forward, t]`` in x right,
    y up, z forward. Raises ValueError for an unknown axis or forward parallel to up.
    """
    forward_local, up_local = axis_vector(forward_axis), axis_vector(up_axis)
    if abs(forward_local @ up_local) > 0:
        raise ValueError(f"forward axis {forward_axis} and up axis {up_axis} must be different axes")
    rotation = cam_opencv[..., :3, :3]
    forward = rotation @ forward_local
    up = rotation @ up_local
    right = np.cross(forward, up)
    columns = [right, up, forward, cam_opencv[..., :3, 3]]
    return np.concatenate([c @ _S.T for c in columns], axis=-1)


def normalise_caption(text: str) -> str:
    """The authors' caption cleaning: blanks and a trailing period stripped, lower case."""
    return text.strip().rstrip(".").strip().lower()


def compose_prompt(entity_captions: list[str], location: str) -> str:
    """``"<e1> and <e2> are moving in the <location>"`` (``is`` for one entity), the authors' template."""
    verb = "is" if len(entity_captions) == 1 else "are"
    return f"{' and '.join(entity_captions)} {verb} moving in the {location}"


def _location_phrase(text: str) -> str:
    phrase = normalise_caption(text)
    for article in _ARTICLES:  # the template already says "in the"
        if phrase.startswith(article):
            return phrase[len(article):]
    return phrase


@dataclass
class TrajMasterInputs:
    """Native inputs of one job.

    pose_embeds: (n, L, 12) float64, n ≤ 3 entities, L latent frames (13 at 49 frames); see module conventions.
    entity_ids: the exported entity ids (1-based) in slot order. entity_prompts: their cleaned captions.
    prompt: the composed scene prompt. latent_indices: (L,) int64 shot frame index of each latent pose.
    shot_frames: (G,) float64 Blender frame each generated frame stands for (G = 49 natively).
    warnings: human-readable notes where the shot is outside the training distribution, each with a fix.
    """

    pose_embeds: np.ndarray
    entity_ids: list[int]
    entity_prompts: list[str]
    prompt: str
    latent_indices: np.ndarray
    shot_frames: np.ndarray
    warnings: list[str] = field(default_factory=list)


def _select_entities(shot: Shot, entity_ids: list[int] | None) -> list[int]:
    ids = list(entity_ids) if entity_ids is not None else [e.id for e in shot.meta.entities]
    if not ids:
        raise PipelineInputError(
            "entities: none to drive; 3DTrajMaster drives 1 to 3 keyframed entities (add them to the TrajPlate "
            "collection, or list their ids in options.entities)"
        )
    unknown = [i for i in ids if not 1 <= i <= shot.num_entities]
    if unknown or len(set(ids)) != len(ids):
        raise PipelineInputError(
            f"options.entities: {ids} must be distinct ids of the shot's entities (1..{shot.num_entities})"
        )
    if len(ids) > MAX_ENTITIES:
        raise PipelineInputError(
            f"entities: {len(ids)} entities, but 3DTrajMaster has {MAX_ENTITIES} entity slots (max_entity_num = 3 "
            "is fixed in the authors' model); pick up to 3 with options.entities"
        )
    return ids


def _distribution_warnings(shot: Shot, ids: list[int], poses: np.ndarray) -> list[str]:
    notes = []
    for slot, entity_id in enumerate(ids):
        name = shot.meta.entities[entity_id - 1].name
        distance = np.linalg.norm(poses[slot, :, 9:], axis=-1)
        low, high = DISTANCE_RANGE_M
        if distance.min() < low or distance.max() > high:
            notes.append(
                f"entity '{name}' is {distance.min():.1f}–{distance.max():.1f} m from the camera; 3DTrajMaster was "
                f"trained at {low:g}–{high:g} m: move the camera or the entity so it stays in that range"
            )
    k = shot.intrinsics[0]
    pixel_aspect = shot.meta.pixel_aspect[0] / shot.meta.pixel_aspect[1]
    hfov = math.degrees(2 * math.atan(shot.width / (2 * k[0, 0] * pixel_aspect)))
    focal_equivalent = k[0, 0] * pixel_aspect * TRAINING_SENSOR_MM / shot.width  # same HFOV on the rig's sensor
    if abs(focal_equivalent / TRAINING_FOCAL_MM - 1.0) > FOCAL_TOLERANCE:
        lens = shot.meta.camera_settings.lens_mm * TRAINING_FOCAL_MM / focal_equivalent
        notes.append(
            f"the camera's horizontal FOV is {hfov:.0f}° ({focal_equivalent:.0f} mm on the training rig's "
            f"{TRAINING_SENSOR_MM} mm sensor); 3DTrajMaster was trained at {TRAINING_HFOV_DEG}° ({TRAINING_FOCAL_MM:g} "
            f"mm): set the lens to about {lens:.0f} mm"
        )
    aspect = shot.width * pixel_aspect / shot.height
    if abs(aspect / TRAINING_ASPECT - 1.0) > 0.01:
        notes.append(
            f"the shot is {shot.width}×{shot.height} (aspect {aspect:.2f}); 3DTrajMaster renders 720×480 (1.50), "
            "so the framing differs from the shot's: set the output to a 3:2 resolution"
        )
    positions = shot.camera_c2w_blender[:, :3, 3]
    travel = np.linalg.norm(positions - positions[0], axis=-1).max()
    relative = np.swapaxes(shot.camera_c2w_blender[:1, :3, :3], -1, -2) @ shot.camera_c2w_blender[:, :3, :3]
    cos_angle = np.clip((np.trace(relative, axis1=-2, axis2=-1) - 1.0) / 2.0, -1.0, 1.0)
    turn = math.degrees(float(np.arccos(cos_angle).max()))
    if travel > STATIC_CAMERA_TOL[0] or turn > STATIC_CAMERA_TOL[1]:
        notes.append(
            f"the camera moves ({travel:.2f} m, {turn:.1f}°); 3DTrajMaster was trained with a static camera, so the "
            "background will not follow the move: keep the camera still and move the entities"
        )
    return notes


def condition(
    shot: Shot,
    *,
    entity_ids: list[int] | None = None,
    location_prompt: str | None = None,
    num_generated: int = NATIVE_FRAMES,
    temporal_compression: int = TEMPORAL_COMPRESSION,
) -> TrajMasterInputs:
    """The shot → :class:`TrajMasterInputs` for ``num_generated`` output frames.

    entity_ids: the entities to drive, in slot order (default all, at most 3). location_prompt: overrides the
    shot's ``location_prompt``. Raises PipelineInputError naming the field: no or too many entities, an empty entity
    prompt, an empty location.
    """
    ids = _select_entities(shot, entity_ids)
    entities = [shot.meta.entities[i - 1] for i in ids]
    captions = [normalise_caption(e.prompt) for e in entities]
    for entity, caption in zip(entities, captions, strict=True):
        if not caption:
            raise PipelineInputError(
                f"entities[{entity.id}].prompt: entity '{entity.name}' has no prompt; 3DTrajMaster binds each entity "
                "to its caption: describe it in 15–24 words"
            )
    location = _location_phrase(location_prompt if location_prompt is not None else shot.meta.location_prompt)
    if not location:
        raise PipelineInputError(
            "location_prompt: the shot has no location; 3DTrajMaster's prompt ends '… moving in the <location>': set "
            "the shot's location (e.g. 'desert', 'snowy street') or pass options.location_prompt"
        )

    latent = latent_frame_indices(shot.num_frames, num_generated, temporal_compression)
    columns = [i - 1 for i in ids]
    cam = shot.entity_cam_opencv[latent][:, columns]  # (L, n, 4, 4)
    poses = np.stack(
        [poses_12(cam[:, slot], e.forward_axis, e.up_axis) for slot, e in enumerate(entities)]
    )  # (n, L, 12)

    notes = []
    for entity, caption in zip(entities, captions, strict=True):
        words = len(caption.split())
        if not WORD_RANGE[0] <= words <= WORD_RANGE[1]:
            notes.append(
                f"entity '{entity.name}' prompt has {words} words; the authors advise {WORD_RANGE[0]}–{WORD_RANGE[1]} "
                "(appearance, colour, texture) for the injector to bind it"
            )
    notes += _distribution_warnings(shot, ids, poses)

    positions = generated_frame_positions(shot.num_frames, num_generated)
    shot_frames = np.interp(positions, np.arange(shot.num_frames), shot.frame_numbers.astype(np.float64))
    return TrajMasterInputs(
        pose_embeds=poses, entity_ids=ids, entity_prompts=captions, prompt=compose_prompt(captions, location),
        latent_indices=latent, shot_frames=shot_frames, warnings=notes,
    )


def preview(shot: Shot, inputs: TrajMasterInputs, axis_length_m: float = 0.5) -> np.ndarray:
    """The control signal over the first frame: (L, H, W, 3) uint8, one image per latent frame.

    Each driven entity's path (its origin at every latent frame) is drawn in its colour, and at the image's latent
    frame its origin and its forward (long) and up (short) axes, ``axis_length_m`` metres long, projected with K.
    Grey background where the shot has no first-frame render.
    """
    base = shot.first_frame if shot.first_frame is not None else np.full((shot.height, shot.width, 3), 96, np.uint8)
    to_cv = np.linalg.inv(_S)  # 3DTrajMaster frame → OpenCV camera frame

    def project(points_tm: np.ndarray, k: np.ndarray) -> np.ndarray | None:
        points = points_tm @ to_cv.T
        if (points[..., 2] <= 1e-6).any():
            return None
        pixels = (points @ k.T)[..., :2] / points[..., 2:3]
        return np.round(pixels - 0.5).astype(np.int32)  # pixel-centre +0.5 convention → OpenCV integer centres

    images = []
    for step, frame in enumerate(inputs.latent_indices):
        image = np.ascontiguousarray(base.copy())
        k = shot.intrinsics[frame]
        for slot, entity_id in enumerate(inputs.entity_ids):
            color = tuple(int(c) for c in shot.meta.entities[entity_id - 1].color)
            pose = inputs.pose_embeds[slot]
            path = [project(p[9:], shot.intrinsics[f]) for p, f in zip(pose, inputs.latent_indices, strict=True)]
            visible = [p for p in path if p is not None]
            if len(visible) > 1:
                cv2.polylines(image, [np.array(visible)], False, color, 1, cv2.LINE_AA)
            origin = pose[step, 9:]
            tips = [origin + axis_length_m * pose[step, 6:9], origin + 0.5 * axis_length_m * pose[step, 3:6]]
            points = project(np.stack([origin, *tips]), k)
            if points is None:
                continue
            cv2.circle(image, tuple(points[0]), 4, color, -1, cv2.LINE_AA)
            for tip in points[1:]:
                cv2.arrowedLine(image, tuple(points[0]), tuple(tip), color, 2, cv2.LINE_AA, tipLength=0.25)
        images.append(image)
    return np.stack(images)
