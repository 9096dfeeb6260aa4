"""Pieces every pipeline adapter shares: settings from params + preset, memory modes, the progress bridge, output.

No torch import at module level: the job runner and the server's validation import this module too, and they must
stay importable (and quick to import) without pulling in a model stack.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
from pydantic import BaseModel, ValidationError

from ..params import MEMORY_MODES, GenerateParams
from .base import PipelineInputError, ProgressFn

if TYPE_CHECKING:
    import torch
    from diffusers import DiffusionPipeline

    from ..presets import Preset
    from ..shot import Shot

logger = logging.getLogger(__name__)

OptionsT = TypeVar("OptionsT", bound=BaseModel)

LOCAL_ONLY = {"local_only": True}
"""``json_schema_extra`` of an Options field that names a path on the machine running the job: honoured by the
in-process CLI (``trajplate run``), refused by the HTTP API (a client must not make the server read its files)."""


REPO_ID_OVER_HTTP = {"local_only": "folder"}
"""``json_schema_extra`` of an Options field that names a Hugging Face repo id or a model folder: the folder form is
local-only like :data:`LOCAL_ONLY` (the CLI honours it), the HTTP API accepts only a repo id."""


def local_only_options(options: type[BaseModel], kind: bool | str = True) -> list[str]:
    """Names of the fields of an Options model marked :data:`LOCAL_ONLY` (``kind=True``) or
    :data:`REPO_ID_OVER_HTTP` (``kind="folder"``)."""
    return [name for name, field in options.model_fields.items()
            if isinstance(field.json_schema_extra, dict) and field.json_schema_extra.get("local_only") == kind]


def parse_options(options: type[OptionsT], params: GenerateParams) -> OptionsT:
    """``params.options`` validated by a pipeline's Options model.

    Raises PipelineInputError naming the first bad field (``options.<field>``) and the valid option names.
    """
    try:
        return options.model_validate(params.options)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        raise PipelineInputError(
            f"options.{field}: {first['msg']}; valid options: {', '.join(options.model_fields)}"
        ) from exc


def resolve_steps(params: GenerateParams, preset: Preset) -> int:
    """Denoising steps: ``params.steps``, else the tier's, else the preset default.

    Raises PipelineInputError for a tier the preset does not define, naming the valid tiers.
    """
    if params.steps is not None:
        return params.steps
    if params.tier is not None:
        if params.tier not in preset.tiers:
            raise PipelineInputError(
                f"tier: {params.tier!r} is unknown; valid: {', '.join(preset.tiers) or '(none)'}")
        return preset.tiers[params.tier].steps
    return preset.defaults.steps


def resolve_guidance(params: GenerateParams, preset: Preset) -> float:
    """CFG scale: ``params.guidance``, else the preset default (tiers set steps only)."""
    return params.guidance if params.guidance is not None else preset.defaults.guidance


def resolve_guidance_ramp(params: GenerateParams, preset: Preset) -> tuple[float, float]:
    """(min, max) of SVD's per-frame linear CFG ramp: the preset's ``guidance`` is the floor; ``params.guidance``,
    else the preset's ``guidance_max`` (else the floor), is the top."""
    low = preset.defaults.guidance
    high = params.guidance if params.guidance is not None else (preset.defaults.guidance_max or low)
    return low, high


def resolve_strength(params: GenerateParams, preset: Preset) -> float:
    """Control (ControlNet) weight: ``params.strength``, else the preset's, else 1."""
    return params.strength if params.strength is not None else (preset.defaults.strength or 1.0)


def resolve_negative_prompt(params: GenerateParams, preset: Preset) -> str:
    """``params.negative_prompt`` (an empty string counts), else the preset's."""
    return params.negative_prompt if params.negative_prompt is not None else preset.defaults.negative_prompt


def effective_settings(params: GenerateParams, preset: Preset, scene_prompt: str | None) -> dict[str, Any]:
    """Steps, guidance and prompts a job runs with once tiers and preset defaults fill the ``None`` fields.

    Raises PipelineInputError for an unknown tier (see :func:`resolve_steps`).
    """
    return {
        "steps": resolve_steps(params, preset),
        "guidance": resolve_guidance(params, preset),
        "prompt": params.prompt if params.prompt is not None else scene_prompt,
        "negative_prompt": resolve_negative_prompt(params, preset),
    }


def shot_prompt(shot: Shot, params: GenerateParams, sep: str = ". ") -> str:
    """``params.prompt``, else the shot's scene prompt, else its entity prompts and location prompt joined by ``sep``
    (all stripped). Raises PipelineInputError when all are empty."""
    if params.prompt and params.prompt.strip():
        return params.prompt.strip()
    meta = shot.meta
    if meta.scene_prompt and meta.scene_prompt.strip():
        return meta.scene_prompt.strip()
    parts = [e.prompt.strip() for e in meta.entities if e.prompt and e.prompt.strip()]
    if meta.location_prompt and meta.location_prompt.strip():
        parts.append(meta.location_prompt.strip())
    if not parts:
        raise PipelineInputError(
            "prompt: empty — neither the job nor the shot has a scene, entity or location prompt. Fix: write a scene "
            "prompt in the add-on's panel or pass `prompt`."
        )
    return sep.join(parts)


def require_first_frame(shot: Shot) -> np.ndarray:
    """The shot's first-frame render, (H, W, 3) uint8 RGB. Raises PipelineInputError when the bundle has none."""
    if shot.first_frame is None:
        raise PipelineInputError("first_frame: the bundle has no first-frame render; re-export with renders on")
    return shot.first_frame


def check_memory_mode(mode: str) -> None:
    """Raises PipelineInputError unless ``mode`` is one of DESIGN's memory modes (call before loading weights)."""
    if mode not in MEMORY_MODES:
        raise PipelineInputError(f"memory_mode: {mode!r} is unknown; valid: {', '.join(MEMORY_MODES)}")


def apply_memory_mode(
    pipe: DiffusionPipeline,
    mode: str,
    device: torch.device,
    *,
    group_offload: Callable[[DiffusionPipeline, torch.device], None] | None = None,
    exclude_from_group_offload: tuple[str, ...] = ("vae",),
) -> str:
    """Place a diffusers pipeline on ``device`` in one of DESIGN's memory modes; returns the mode applied.

    Without CUDA there is nowhere to offload to, so every mode runs resident (logged) and ``"resident"`` is returned.
    ``group_offload``: a pipeline-specific placement for ``group_offload``; by default diffusers' block-level group
    offloading, one block per group with CUDA streams, keeping ``exclude_from_group_offload`` (the small VAE) on the
    GPU. Raises PipelineInputError for an unknown mode.
    """
    check_memory_mode(mode)
    if device.type != "cuda":
        if mode != "resident":
            logger.warning("memory_mode %s needs CUDA; running resident on %s", mode, device)
        pipe.to(device)
        return "resident"
    if mode == "resident":
        pipe.to(device)
    elif mode == "model_offload":
        pipe.enable_model_cpu_offload(device=device)
    elif mode == "group_offload":
        if group_offload is not None:
            group_offload(pipe, device)
        else:
            pipe.enable_group_offload(onload_device=device, offload_type="block_level", num_blocks_per_group=1,
                                      use_stream=True, exclude_modules=list(exclude_from_group_offload))
    else:
        pipe.enable_sequential_cpu_offload(device=device)
    return mode


def denoising_callback(progress: ProgressFn, steps: int) -> Callable[[Any, int, Any, dict], dict]:
    """A diffusers ``callback_on_step_end`` reporting ``progress("denoising", i + 1, steps)`` after each step and
    ``("decoding", 0, 1)`` after the last. Whatever ``progress`` raises (:class:`~.base.Cancelled`) propagates out of
    the pipeline call, so a cancel stops within one step and skips decoding."""

    def on_step(_pipe: Any, i: int, _t: Any, _kwargs: dict) -> dict:
        progress("denoising", i + 1, steps)
        if i + 1 == steps:
            progress("decoding", 0, 1)
        return {}

    return on_step


def to_uint8_video(video: np.ndarray) -> np.ndarray:
    """Decoded frames in [0, 1] (any float dtype, (T, H, W, 3)) → (T, H, W, 3) uint8, clipped and rounded."""
    return (np.clip(video, 0.0, 1.0) * 255.0).round().astype(np.uint8)


def bytes_on_device(modules: Iterable[torch.nn.Module | None], device: torch.device) -> int:
    """Bytes of the parameters and buffers of ``modules`` (None skipped) that sit on ``device``'s type."""
    return sum(
        t.numel() * t.element_size()
        for module in modules if module is not None
        for t in (*module.parameters(), *module.buffers())
        if t.device.type == device.type
    )
