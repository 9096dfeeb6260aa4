"""The shot bundle contract, reader side: ``load_shot`` validates a bundle and gives typed access to every array.

A shot is what Blender knows exactly about a blocked-out shot: per-frame camera K and extrinsics, entity 6-DoF poses,
2D tracks and boxes, and optionally planar depth and instance masks. The format is documented for other exporters in
``docs/shot-bundle.md``; the JSON Schema of ``shot.json`` (``docs/shot.schema.json``) is generated from the models
below with ``python -m trajplate.shot --schema > docs/shot.schema.json``.

Conventions (DESIGN.md): world = Blender world, right-handed, Z up, metres. ``camera_c2w_blender`` has Blender camera
axes (x right, y up, looking down -z); ``camera_w2c_opencv`` has OpenCV axes (x right, y down, z forward) and equals
``diag(1,-1,-1,1) @ inv(c2w_blender)``. Pixels: x right, y down, origin at the top-left image corner, pixel centres at
+0.5 (an unshifted camera has cx = W/2). Entity ids start at 1 (column k of the N axis is id k+1); 0 is background.

The Python API is a contract with the export, the pipelines and the job service; keep its names.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, BinaryIO, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .bundle_io import (
    ExpectedArray,
    decode_png,
    encode_png,
    open_bundle,
    read_arrays,
    read_source,
    write_bundle_file,
)
from .zipsafe import BundleError, BundleLimits, check_entry_name

__all__ = [
    "ARRAY_SPECS",
    "FORMAT_VERSION",
    "BundleError",
    "BundleLimits",
    "CameraSettings",
    "EntityMeta",
    "Generator",
    "Renders",
    "Shot",
    "ShotMeta",
    "load_shot",
    "save_shot",
]

FORMAT_VERSION = "1.0"
DEFAULT_LIMITS = BundleLimits()
_MAJOR, _MINOR = (int(p) for p in FORMAT_VERSION.split("."))

# The public array table (DESIGN.md): name -> (symbolic shape, dtype). F frames, N entities, H x W pixels.
ARRAY_SPECS: dict[str, tuple[tuple[str | int, ...], str]] = {
    "frame_numbers": (("F",), "int32"),
    "time_s": (("F",), "float64"),
    "camera_c2w_blender": (("F", 4, 4), "float64"),
    "camera_w2c_opencv": (("F", 4, 4), "float64"),
    "intrinsics": (("F", 3, 3), "float64"),
    "entity_world": (("F", "N", 4, 4), "float64"),
    "entity_position": (("F", "N", 3), "float64"),
    "entity_quaternion_wxyz": (("F", "N", 4), "float64"),
    "entity_cam_opencv": (("F", "N", 4, 4), "float64"),
    "track_2d": (("F", "N", 2), "float64"),
    "track_depth": (("F", "N"), "float64"),
    "track_in_frame": (("F", "N"), "bool"),
    "track_visible": (("F", "N"), "bool"),
    "box_2d": (("F", "N", 4), "float64"),
    "box_2d_valid": (("F", "N"), "bool"),
    "box_3d_world": (("F", "N", 8, 3), "float64"),
    "depth": (("F", "H", "W"), "float32"),
    "instance_mask": (("F", "H", "W"), "uint8"),
}
OPTIONAL_ARRAYS = ("depth", "instance_mask")
_CV_FROM_BLENDER = np.diag([1.0, -1.0, -1.0, 1.0])  # Blender camera axes -> OpenCV camera axes
_POSE_TOL = 1e-5  # Blender evaluates matrices in float32; exporters' float64 maths must agree to this


def _rgb_name(index: int) -> str:
    """Per-frame render name: 1-based position in the exported frame list (frame numbers may be negative)."""
    return f"rgb/{index:04d}.png"


FIRST_FRAME_NAME = "first_frame.png"

Axis = Literal["X", "-X", "Y", "-Y", "Z", "-Z"]
Finite = Annotated[float, Field(allow_inf_nan=False)]
Positive = Annotated[float, Field(gt=0, allow_inf_nan=False)]
Channel = Annotated[int, Field(ge=0, le=255)]


class _Model(BaseModel):
    # strict: no "24" -> 24 coercion, a typo'd type is an error; extra keys kept: newer minor versions may add some
    model_config = ConfigDict(strict=True, extra="allow", allow_inf_nan=False)


class Generator(_Model):
    name: str = Field(description="exporter name, e.g. 'TrajPlate'")
    addon_version: str = Field("", description="exporter version")
    blender_version: str = Field("", description="host application version (Blender, Maya, ...)")


class CameraSettings(_Model):
    """The camera at the first exported frame; per-frame K is in ``intrinsics``."""

    type: Literal["PERSP"] = Field(description="only perspective cameras are supported")
    lens_mm: Positive
    sensor_width_mm: Positive
    sensor_height_mm: Positive
    sensor_fit: Literal["AUTO", "HORIZONTAL", "VERTICAL"]
    shift_x: Finite = Field(description="lens shift in units of the larger sensor dimension (Blender)")
    shift_y: Finite
    clip_start: Positive = Field(description="metres")
    clip_end: Positive = Field(description="metres")

    @model_validator(mode="after")
    def _clip_order(self) -> CameraSettings:
        if self.clip_end <= self.clip_start:
            raise ValueError(f"clip_end ({self.clip_end}) must be greater than clip_start ({self.clip_start})")
        return self


class EntityMeta(_Model):
    id: int = Field(ge=1, le=255, description="1-based, contiguous 1..N in array order; instance_mask value")
    name: str = Field(min_length=1)
    prompt: str = Field("", description="text describing the entity, e.g. 'a red vintage car'")
    forward_axis: Axis = Field(description="which local axis the entity faces along")
    up_axis: Axis = Field(description="which local axis points up on the entity")
    color: Annotated[list[Channel], Field(min_length=3, max_length=3)] = Field(description="[r, g, b] 0-255")
    kind: str = Field("object", description="free-form category, e.g. 'person', 'vehicle', 'object'")

    @model_validator(mode="after")
    def _axes_differ(self) -> EntityMeta:
        if self.forward_axis.lstrip("-") == self.up_axis.lstrip("-"):
            raise ValueError(f"forward_axis {self.forward_axis} and up_axis {self.up_axis} must be different axes")
        return self


class Renders(_Model):
    depth: bool = Field(description="arrays.npz holds 'depth'")
    instance_mask: bool = Field(description="arrays.npz holds 'instance_mask'")
    engine: str = Field("", description="render engine used for depth, masks and frames")


class ShotMeta(_Model):
    """``shot.json``: everything about the shot that is not an array."""

    format_version: str = Field(pattern=r"^\d+\.\d+$", description="MAJOR.MINOR; readers accept their own major")
    generator: Generator
    scene: str = ""
    camera: str = Field("", description="camera object at the first exported frame")
    cameras: list[str] = Field(default_factory=list, description="camera object per exported frame (markers switch)")
    blend_file: str = Field("", description="absolute path of the source file, or ''")
    fps: Positive = Field(description="frames per second (Blender: fps / fps_base)")
    frame_start: int
    frame_end: int
    frame_step: int = Field(ge=1)
    frame_count: int = Field(ge=1, description="F = len(range(frame_start, frame_end + 1, frame_step))")
    resolution: Annotated[list[Annotated[int, Field(ge=1, le=16384)]], Field(min_length=2, max_length=2)] = Field(
        description="[W, H] output pixels (after Blender's resolution percentage)"
    )
    pixel_aspect: Annotated[list[Positive], Field(min_length=2, max_length=2)] = [1.0, 1.0]
    camera_settings: CameraSettings
    unit_scale: Positive = Field(1.0, description="scene unit scale already applied: arrays are in metres")
    entities: list[EntityMeta] = Field(max_length=255)
    scene_prompt: str = ""
    location_prompt: str = ""
    conventions: dict[str, str] = Field(default_factory=dict, description="human-readable statement of conventions")
    frames: list[str] = Field(
        default_factory=list, description="files under frames/: 'first_frame.png', 'rgb/<index:04d>.png' (1-based position)"
    )
    renders: Renders

    @field_validator("format_version")
    @classmethod
    def _supported_version(cls, version: str) -> str:
        if int(version.split(".")[0]) != _MAJOR:
            raise ValueError(
                f"format_version {version} is not supported: this TrajPlate reads {_MAJOR}.x bundles "
                f"(up to {FORMAT_VERSION}); export with a matching add-on or update TrajPlate"
            )
        return version

    @model_validator(mode="after")
    def _consistent(self) -> ShotMeta:
        frames = self.frame_numbers()
        if self.frame_count != len(frames):
            raise ValueError(
                f"frame_count is {self.frame_count} but range(frame_start={self.frame_start}, frame_end="
                f"{self.frame_end} + 1, frame_step={self.frame_step}) has {len(frames)} frames"
            )
        if self.cameras and len(self.cameras) != self.frame_count:
            raise ValueError(f"cameras has {len(self.cameras)} names; expected one per frame ({self.frame_count})")
        ids = [entity.id for entity in self.entities]
        if ids != list(range(1, len(ids) + 1)):
            raise ValueError(f"entities ids are {ids}; expected 1..N in array order ({list(range(1, len(ids) + 1))})")
        known = {FIRST_FRAME_NAME, *(_rgb_name(i + 1) for i in range(len(frames)))}
        if len(set(self.frames)) != len(self.frames):
            raise ValueError("frames lists a file more than once")
        for name in self.frames:
            check_entry_name(name, "frames: ")
            if name not in known and not self.newer_minor:
                raise ValueError(
                    f"frames: unknown file {name!r}; format {FORMAT_VERSION} has '{FIRST_FRAME_NAME}' and "
                    f"'rgb/<index:04d>.png' (1-based) for every exported frame"
                )
        rgb = [name for name in self.frames if name.startswith("rgb/")]
        if rgb and len(rgb) != self.frame_count:
            raise ValueError(f"frames has {len(rgb)} rgb/ renders; expected none or one per frame ({self.frame_count})")
        return self

    @property
    def newer_minor(self) -> bool:
        """True for a bundle of a newer minor version: unknown keys, arrays and frames are then ignored."""
        return int(self.format_version.split(".")[1]) > _MINOR

    def frame_numbers(self) -> range:
        """The Blender frame numbers exported."""
        return range(self.frame_start, self.frame_end + 1, self.frame_step)


def _meta_error(exc: ValidationError, where: str) -> BundleError:
    errors = exc.errors(include_url=False)
    # An unknown major version makes every other complaint noise.
    errors = [e for e in errors if e["loc"][:1] == ("format_version",)] or errors
    lines = []
    for error in errors[:5]:
        field = ".".join(str(part) for part in error["loc"]) or "(top level)"
        got = "" if error["type"].startswith("value_error") else f" (got {repr(error['input'])[:60]})"
        lines.append(f"{where}: {field}: {error['msg'].removeprefix('Value error, ')}{got}")
    more = f"\n... and {len(errors) - 5} more" if len(errors) > 5 else ""
    return BundleError("\n".join(lines) + more)


def parse_meta(data: bytes) -> ShotMeta:
    """Parse and validate ``shot.json`` bytes. Raises BundleError naming the field."""
    try:
        raw = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise BundleError(f"shot.json: not valid UTF-8 JSON ({exc})") from exc
    if not isinstance(raw, dict):
        raise BundleError(f"shot.json: must be a JSON object, not {type(raw).__name__}")
    try:
        # JSON mode: strict types as JSON has them (lists for [W, H], ints accepted for floats).
        return ShotMeta.model_validate_json(data)
    except ValidationError as exc:
        raise _meta_error(exc, "shot.json") from exc


def expected_arrays(num_frames: int, num_entities: int, height: int, width: int) -> dict[str, ExpectedArray]:
    """Concrete shape and dtype of every array (optional ones included) for a shot of this size."""
    sizes = {"F": num_frames, "N": num_entities, "H": height, "W": width}
    out = {}
    for name, (symbols, dtype) in ARRAY_SPECS.items():
        shape = tuple(sizes[s] if isinstance(s, str) else s for s in symbols)
        out[name] = ExpectedArray(shape, "(" + ", ".join(map(str, symbols)) + ")", np.dtype(dtype))
    return out


@dataclass(eq=False, repr=False, kw_only=True)
class Shot:
    """A validated shot: ``meta`` plus every array of the DESIGN table as a NumPy attribute.

    Build one with :func:`load_shot` or :meth:`Shot.from_arrays`; construction validates everything and raises
    BundleError naming the field. Arrays are plain NumPy arrays shared with whoever reads the shot: treat them as
    read-only (copy before modifying).

    Shapes: F = ``num_frames``, N = ``num_entities``, H x W = ``height`` x ``width``. All float64 unless stated.
      frame_numbers (F,) int32: Blender frame numbers. time_s (F,): seconds from the first exported frame.
      camera_c2w_blender (F,4,4): camera-to-world, Blender camera axes, metres.
      camera_w2c_opencv (F,4,4): world-to-camera, OpenCV axes = diag(1,-1,-1,1) @ inv(camera_c2w_blender).
      intrinsics (F,3,3): K in pixels at W x H, principal point in pixel-corner coordinates (unshifted: W/2, H/2).
      entity_world (F,N,4,4): object-to-world, scale included. entity_position (F,N,3): world position, metres.
      entity_quaternion_wxyz (F,N,4): world rotation, scale removed, unit (w, x, y, z).
      entity_cam_opencv (F,N,4,4): entity pose in the OpenCV camera frame (w2c @ world), scale removed.
      track_2d (F,N,2): projected entity origin, pixels (centres at +0.5). track_depth (F,N): its camera z, metres
      (negative: behind the camera). track_in_frame / track_visible (F,N) bool: inside the image and in front;
      and not occluded. box_2d (F,N,4): x0, y0, x1, y1 pixels, tight, clipped to the image; box_2d_valid (F,N) bool.
      box_3d_world (F,N,8,3): oriented box corners in Blender ``bound_box`` order, world.
      depth (F,H,W) float32 or None: planar camera z in metres, inf for background.
      instance_mask (F,H,W) uint8 or None: entity id per pixel, 0 background.
      first_frame (H,W,3) uint8 RGB or None: beauty render of the first exported frame.
      rgb_frames (F,H,W,3) uint8 RGB or None: beauty render of every exported frame.
      bundle_sha256: hex SHA-256 of the bundle bytes (provenance), None for a shot built in memory.
    """

    meta: ShotMeta
    frame_numbers: np.ndarray
    time_s: np.ndarray
    camera_c2w_blender: np.ndarray
    camera_w2c_opencv: np.ndarray
    intrinsics: np.ndarray
    entity_world: np.ndarray
    entity_position: np.ndarray
    entity_quaternion_wxyz: np.ndarray
    entity_cam_opencv: np.ndarray
    track_2d: np.ndarray
    track_depth: np.ndarray
    track_in_frame: np.ndarray
    track_visible: np.ndarray
    box_2d: np.ndarray
    box_2d_valid: np.ndarray
    box_3d_world: np.ndarray
    depth: np.ndarray | None = None
    instance_mask: np.ndarray | None = None
    first_frame: np.ndarray | None = None
    rgb_frames: np.ndarray | None = None
    bundle_sha256: str | None = None

    def __post_init__(self) -> None:
        _validate(self)

    @property
    def width(self) -> int:
        return self.meta.resolution[0]

    @property
    def height(self) -> int:
        return self.meta.resolution[1]

    @property
    def num_frames(self) -> int:
        return self.meta.frame_count

    @property
    def num_entities(self) -> int:
        return len(self.meta.entities)

    def arrays(self) -> dict[str, np.ndarray]:
        """The arrays present, by their bundle names, in DESIGN table order."""
        return {name: getattr(self, name) for name in ARRAY_SPECS if getattr(self, name) is not None}

    def __repr__(self) -> str:
        extras = [name for name in (*OPTIONAL_ARRAYS, "first_frame", "rgb_frames") if getattr(self, name) is not None]
        return (
            f"Shot({self.width}x{self.height}, {self.num_frames} frames @ {self.meta.fps:g} fps, "
            f"{self.num_entities} entities{', ' if extras else ''}{', '.join(extras)})"
        )

    @classmethod
    def from_arrays(
        cls,
        meta: ShotMeta | dict[str, Any],
        arrays: dict[str, Any],
        first_frame: np.ndarray | None = None,
        rgb_frames: np.ndarray | None = None,
    ) -> Shot:
        """Build and validate a shot in memory (synthetic tests, other importers).

        ``meta``: a ShotMeta or the shot.json dict. ``arrays``: the DESIGN table by name; values of the same kind
        are cast losslessly to the table's dtype (int64 frame numbers -> int32, float32 poses -> float64).
        ``first_frame`` (H,W,3) uint8 RGB, ``rgb_frames`` (F,H,W,3) uint8 RGB; their file names are added to
        ``meta.frames``. Raises BundleError naming the field.
        """
        if not isinstance(meta, ShotMeta):
            try:
                text = json.dumps(meta, allow_nan=False)
            except (TypeError, ValueError) as exc:
                raise BundleError(f"meta: not JSON-serialisable ({exc})") from exc
            try:  # the JSON path, so a dict passes exactly when its shot.json would
                meta = ShotMeta.model_validate_json(text)
            except ValidationError as exc:
                raise _meta_error(exc, "meta") from exc
        names = [FIRST_FRAME_NAME] if first_frame is not None else []
        names += [_rgb_name(i + 1) for i in range(meta.frame_count)] if rgb_frames is not None else []
        meta = meta.model_copy(update={"frames": names})
        unknown = sorted(set(arrays) - set(ARRAY_SPECS))
        if unknown:
            raise BundleError(f"arrays: unknown array(s) {unknown}; known arrays: {', '.join(ARRAY_SPECS)}")
        missing = [name for name in ARRAY_SPECS if name not in arrays and name not in OPTIONAL_ARRAYS]
        if missing:
            raise BundleError(f"arrays: missing {missing}; every shot needs all arrays except {OPTIONAL_ARRAYS}")
        cast = {name: _cast(name, value, np.dtype(ARRAY_SPECS[name][1])) for name, value in arrays.items()}
        return cls(meta=meta, **cast, first_frame=first_frame, rgb_frames=rgb_frames)


def _cast(name: str, value: Any, dtype: np.dtype) -> np.ndarray:
    array = np.asarray(value)
    if array.dtype == dtype:
        return array
    kinds = {"b": "b", "i": "iub", "u": "iub", "f": "fiub"}[dtype.kind]
    if array.dtype.kind not in kinds:
        raise BundleError(f"arrays: {name!r} has dtype {array.dtype}; expected {dtype}")
    if dtype.kind in "iu" and array.size:
        info = np.iinfo(dtype)
        if array.min() < info.min or array.max() > info.max:
            raise BundleError(f"arrays: {name!r} has values outside the range of {dtype}")
    return array.astype(dtype)


def _fail(name: str, problem: str) -> BundleError:
    return BundleError(f"arrays.npz: {name!r} {problem}")


def _first(mask: np.ndarray) -> tuple[int, ...]:
    return tuple(int(i) for i in np.argwhere(mask)[0])


def _validate(shot: Shot) -> None:
    meta = shot.meta
    if not isinstance(meta, ShotMeta):
        raise BundleError("meta: must be a ShotMeta (use Shot.from_arrays to build a shot from a dict)")
    expected = expected_arrays(shot.num_frames, shot.num_entities, shot.height, shot.width)
    for name, spec in expected.items():
        array = getattr(shot, name)
        if array is None:
            if name not in OPTIONAL_ARRAYS:
                raise _fail(name, "is missing; every bundle holds all arrays except depth and instance_mask")
            continue
        if not isinstance(array, np.ndarray) or array.dtype != spec.dtype:
            raise _fail(name, f"has dtype {getattr(array, 'dtype', type(array).__name__)}; expected {spec.dtype}")
        if array.shape != spec.shape:
            raise _fail(name, f"has shape {array.shape}; expected {spec.symbolic} = {spec.shape}")
        if spec.dtype == np.float64 and not np.isfinite(array).all():
            raise _fail(name, f"holds NaN or inf at {_first(~np.isfinite(array))}; it must be finite")
    for name in OPTIONAL_ARRAYS:
        if (getattr(shot, name) is not None) != getattr(meta.renders, name):
            raise BundleError(
                f"shot.json: renders.{name} is {str(getattr(meta.renders, name)).lower()} but arrays.npz "
                f"{'holds' if getattr(shot, name) is not None else 'lacks'} {name!r}; make them agree"
            )
    _validate_time(shot)
    _validate_poses(shot)
    _validate_tracks(shot)
    _validate_renders(shot)


def _validate_time(shot: Shot) -> None:
    meta = shot.meta
    frames = np.asarray(meta.frame_numbers(), dtype=np.int64)
    if not np.array_equal(shot.frame_numbers, frames):
        raise _fail(
            "frame_numbers",
            f"is not range(frame_start, frame_end + 1, frame_step) from shot.json ({meta.frame_start}..{meta.frame_end} step {meta.frame_step})",
        )
    expected_time = (frames - frames[0]) / meta.fps
    if not np.allclose(shot.time_s, expected_time, rtol=1e-9, atol=1e-6):
        raise _fail(
            "time_s",
            f"is not (frame_numbers - frame_numbers[0]) / fps with fps {meta.fps:g} (first difference at frame index {_first(~np.isclose(shot.time_s, expected_time, rtol=1e-9, atol=1e-6))[0]})",
        )


def _check_rigid(name: str, matrices: np.ndarray, *, scaled: bool = False) -> None:
    """(..., 4, 4) transforms: bottom row [0, 0, 0, 1]; unless ``scaled``, a proper rotation (no scale/reflection)."""
    bottom = np.abs(matrices[..., 3, :] - [0.0, 0.0, 0.0, 1.0]).max(axis=-1)
    if (bottom > 1e-9).any():
        raise _fail(name, f"bottom row is not [0, 0, 0, 1] at {_first(bottom > 1e-9)}")
    if scaled:
        return
    rotation = matrices[..., :3, :3]
    error = np.abs(np.swapaxes(rotation, -1, -2) @ rotation - np.eye(3)).max(axis=(-1, -2))
    bad = (error > _POSE_TOL) | (np.linalg.det(rotation) < 0)
    if bad.any():
        raise _fail(name, f"rotation at {_first(bad)} is not a proper rotation (orthonormal, det +1); remove scale")


def _validate_poses(shot: Shot) -> None:
    _check_rigid("camera_c2w_blender", shot.camera_c2w_blender)
    _check_rigid("camera_w2c_opencv", shot.camera_w2c_opencv)
    _check_rigid("entity_world", shot.entity_world, scaled=True)
    _check_rigid("entity_cam_opencv", shot.entity_cam_opencv)
    c2w = shot.camera_c2w_blender
    rotation_t = np.swapaxes(c2w[:, :3, :3], -1, -2)
    inverse = np.zeros_like(c2w)
    inverse[:, :3, :3] = rotation_t
    inverse[:, :3, 3] = -(rotation_t @ c2w[:, :3, 3, None])[..., 0]
    inverse[:, 3, 3] = 1.0
    scale = 1.0 + np.abs(c2w[:, :3, 3]).max(axis=-1)
    error = np.abs(shot.camera_w2c_opencv - _CV_FROM_BLENDER @ inverse).max(axis=(-1, -2)) / scale
    if (error > _POSE_TOL).any():
        raise _fail(
            "camera_w2c_opencv",
            f"at frame index {_first(error > _POSE_TOL)[0]} is not diag(1,-1,-1,1) @ inv(camera_c2w_blender)",
        )
    k = shot.intrinsics
    form = np.abs(k[:, 2, :] - [0.0, 0.0, 1.0]).max(axis=-1) + np.abs(k[:, 1, 0])
    if (form > 0).any() or (k[:, 0, 0] <= 0).any() or (k[:, 1, 1] <= 0).any():
        bad = (form > 0) | (k[:, 0, 0] <= 0) | (k[:, 1, 1] <= 0)
        raise _fail(
            "intrinsics",
            f"at frame index {_first(bad)[0]} is not [[fx, s, cx], [0, fy, cy], [0, 0, 1]] with fx, fy > 0",
        )
    translation = shot.entity_world[..., :3, 3]
    error = np.abs(shot.entity_position - translation).max(axis=-1, initial=0.0) / (
        1.0 + np.abs(translation).max(axis=-1, initial=0.0)
    )
    if (error > _POSE_TOL).any():
        raise _fail("entity_position", f"at {_first(error > _POSE_TOL)} differs from entity_world[..., :3, 3]")
    norm_error = np.abs(np.linalg.norm(shot.entity_quaternion_wxyz, axis=-1) - 1.0)
    if (norm_error > _POSE_TOL).any():
        raise _fail("entity_quaternion_wxyz", f"at {_first(norm_error > _POSE_TOL)} is not a unit quaternion")


def _validate_tracks(shot: Shot) -> None:
    if (shot.track_visible & ~shot.track_in_frame).any():
        raise _fail(
            "track_visible",
            f"is true where track_in_frame is false at {_first(shot.track_visible & ~shot.track_in_frame)}",
        )
    behind = shot.track_in_frame & (shot.track_depth <= 0)
    if behind.any():
        raise _fail("track_in_frame", f"is true for an origin behind the camera (track_depth <= 0) at {_first(behind)}")
    x0, y0, x1, y1 = np.moveaxis(shot.box_2d, -1, 0)
    outside = shot.box_2d_valid & ((x0 < 0) | (y0 < 0) | (x0 > x1) | (y0 > y1) | (x1 > shot.width) | (y1 > shot.height))
    if outside.any():
        raise _fail("box_2d", f"at {_first(outside)} is not 0 <= x0 <= x1 <= W, 0 <= y0 <= y1 <= H where box_2d_valid")


def _validate_renders(shot: Shot) -> None:
    if shot.depth is not None and not (shot.depth > 0).all():  # NaN fails the comparison too
        nan = np.isnan(shot.depth)
        if nan.any():
            raise _fail("depth", f"holds NaN at (frame, y, x) {_first(nan)}; background must be inf")
        raise _fail(
            "depth",
            f"holds a value <= 0 at (frame, y, x) {_first(shot.depth <= 0)}; planar z in front of the camera is > 0",
        )
    if shot.instance_mask is not None and shot.instance_mask.size and shot.instance_mask.max() > shot.num_entities:
        raise _fail(
            "instance_mask",
            f"holds id {shot.instance_mask.max()} at (frame, y, x) {_first(shot.instance_mask > shot.num_entities)}; ids are 0 (background) or 1..N = 1..{shot.num_entities}",
        )
    for name, shape in (
        ("first_frame", (shot.height, shot.width, 3)),
        ("rgb_frames", (shot.num_frames, shot.height, shot.width, 3)),
    ):
        image = getattr(shot, name)
        if image is not None and (not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.shape != shape):
            raise BundleError(
                f"{name}: expected {shape} uint8 RGB, got {getattr(image, 'shape', None)} {getattr(image, 'dtype', type(image).__name__)}"
            )


def load_shot(
    source: str | os.PathLike | bytes | bytearray | memoryview | BinaryIO, *, limits: BundleLimits = DEFAULT_LIMITS
) -> Shot:
    """Read and validate a shot bundle from a path, bytes or a binary file object.

    Safe for untrusted uploads: zip entries and sizes are checked against ``limits`` before anything is inflated,
    arrays are checked against the contract before their data is read, and no pickle is ever loaded.
    Raises BundleError (a ValueError) naming the entry or field for every problem with the bundle; TypeError only
    for a ``source`` of the wrong kind.
    """
    data = read_source(source, limits)
    raw = open_bundle(data, limits)
    meta = parse_meta(raw.meta_bytes())
    width, height = meta.resolution
    expected = expected_arrays(meta.frame_count, len(meta.entities), height, width)
    arrays = read_arrays(raw.arrays_buffer(), expected, limits, ignore_unknown=meta.newer_minor)
    missing = [name for name in ARRAY_SPECS if name not in arrays and name not in OPTIONAL_ARRAYS]
    if missing:
        raise BundleError(f"arrays.npz: missing {missing}; every bundle holds all arrays except {OPTIONAL_ARRAYS}")
    present, listed = set(raw.frame_files), set(meta.frames)
    if present - listed:
        raise BundleError(f"frames/{sorted(present - listed)[0]}: in the bundle but not listed in shot.json 'frames'")
    if listed - present:
        raise BundleError(
            f"frames/{sorted(listed - present)[0]}: listed in shot.json 'frames' but missing from the bundle"
        )
    first_frame = None
    if FIRST_FRAME_NAME in listed:
        first_frame = decode_png(raw.frame_bytes(FIRST_FRAME_NAME), width, height, f"frames/{FIRST_FRAME_NAME}")
    rgb_frames = None
    if any(name.startswith("rgb/") for name in listed):
        rgb_frames = np.stack(
            [
                decode_png(raw.frame_bytes(_rgb_name(i + 1)), width, height, f"frames/{_rgb_name(i + 1)}")
                for i in range(meta.frame_count)
            ]
        )
    return Shot(
        meta=meta,
        **arrays,
        first_frame=first_frame,
        rgb_frames=rgb_frames,
        bundle_sha256=hashlib.sha256(data).hexdigest(),
    )


def save_shot(shot: Shot, path: str | os.PathLike) -> Path:
    """Write ``shot`` as a bundle at ``path`` atomically; returns the path. PNG frames are re-encoded."""
    frames = {}
    if shot.first_frame is not None:
        frames[FIRST_FRAME_NAME] = encode_png(shot.first_frame)
    if shot.rgb_frames is not None:
        for index, image in enumerate(shot.rgb_frames, start=1):
            frames[_rgb_name(index)] = encode_png(image)
    meta = shot.meta.model_copy(update={"frames": list(frames)})
    return write_bundle_file(path, meta.model_dump_json(indent=1).encode(), shot.arrays(), frames)


def json_schema() -> dict[str, Any]:
    """The JSON Schema of shot.json, generated from :class:`ShotMeta` (checked in as docs/shot.schema.json)."""
    schema = ShotMeta.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = f"TrajPlate shot.json (format {FORMAT_VERSION})"
    return schema


def json_schema_text() -> str:
    """docs/shot.schema.json exactly as ``python -m trajplate.shot --schema`` writes it."""
    return json.dumps(json_schema(), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    if sys.argv[1:] != ["--schema"]:
        sys.exit("usage: python -m trajplate.shot --schema > docs/shot.schema.json")
    sys.stdout.write(json_schema_text())
