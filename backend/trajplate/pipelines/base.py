"""The one interface every TrajPlate pipeline implements (DESIGN: anatomy of a pipeline).

A pipeline package ``trajplate.pipelines.<name>`` exposes a subclass of :class:`TrajPipeline`
as ``PIPELINE``. The executor calls, in order::

    pipe = PIPELINE.load(preset, base_dir, adapter_dir, device=..., dtype=..., memory_mode=...)
    inputs = pipe.prepare(shot, params)            # conditioning: Shot -> native inputs (CPU)
    video = pipe.generate(inputs, params, progress)  # denoise + decode, progress may raise Cancelled

``PIPELINE.build_tiny(root)`` writes tiny randomly initialised weights in the same folder
layouts as the real ones (``root/base`` diffusers-format, ``root/adapter`` the authors'
layout), so tests and the demo go through the real loading code.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    import torch

    from ..params import GenerateParams, MemoryMode
    from ..presets import Preset
    from ..shot import Shot

STAGES = ("queued", "loading", "conditioning", "denoising", "decoding", "encoding")

ProgressFn = Callable[[str, int, int], None]
"""``progress(stage, step, steps)``; stage is one of :data:`STAGES`. It may raise :class:`Cancelled`."""


class Cancelled(Exception):
    """Raised from a progress callback (the diffusers step callback) to stop a job; decoding is skipped."""


class PipelineInputError(ValueError):
    """The shot or the parameters cannot drive this pipeline; the message names the field and the fix."""


class NoOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")


@dataclass
class GeneratedVideo:
    """A generated take.

    frames: (T, H, W, 3) uint8 RGB. fps: the pipeline's native output rate.
    shot_frames: (T,) float64 — the Blender frame each output frame stands for (the time map),
    so the add-on and the adherence score can line the take up with the shot.
    """

    frames: np.ndarray
    fps: float
    shot_frames: np.ndarray
    metadata: dict[str, Any] = field(default_factory=dict)


class TrajPipeline(ABC):
    """Base of the five pipeline adapters. Subclasses set ``id`` and ``Options``."""

    id: ClassVar[str]
    Options: ClassVar[type[BaseModel]] = NoOptions
    input_files: ClassVar[tuple[str, ...]] = ()
    """Files a job may attach beyond the bundle (e.g. ``"source_video"``): multipart parts of ``POST /v1/jobs``,
    stored with the job and passed to :meth:`prepare` as keyword arguments (a ``Path`` each) when attached."""

    def __init__(self, pipe: Any, preset: Preset, device: str | torch.device | None, memory_mode: MemoryMode,
                 applied_memory_mode: str):
        """State every adapter keeps: the diffusers pipeline, its preset, the device, the memory mode the job asked
        for and the one really applied (without CUDA every mode runs ``resident``)."""
        self.pipe = pipe
        self.preset = preset
        self.device = device
        self.memory_mode = memory_mode
        self.applied_memory_mode = applied_memory_mode

    @classmethod
    @abstractmethod
    def load(
        cls,
        preset: Preset,
        base_dir: Path,
        adapter_dir: Path,
        *,
        device: str | torch.device = "cpu",
        dtype: torch.dtype | None = None,
        memory_mode: MemoryMode = "resident",
        variant: str | None = None,
    ) -> TrajPipeline:
        """Build the pipeline from a diffusers-format base folder and the authors' adapter folder."""

    @abstractmethod
    def prepare(self, shot: Shot, params: GenerateParams) -> Any:
        """Conditioning: the shot -> this pipeline's native inputs. Raises :class:`PipelineInputError`."""

    @abstractmethod
    def generate(self, inputs: Any, params: GenerateParams, progress: ProgressFn) -> GeneratedVideo:
        """Sample. Calls ``progress`` every denoising step; a :class:`Cancelled` from it propagates."""

    @classmethod
    @abstractmethod
    def build_tiny(cls, root: Path) -> None:
        """Write tiny random weights to ``root/base`` and ``root/adapter`` in the real layouts."""

    def resident_bytes(self) -> int:
        """Bytes of parameters this pipeline keeps on its device (for the worker's memory budget)."""
        return 0

    def preview(self, shot: Shot, params: GenerateParams) -> np.ndarray | None:
        """The control signal drawn over the first frame, (T, H, W, 3) uint8, or None."""
        return None
