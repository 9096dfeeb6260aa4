"""Trajectory Attention behind TrajPlate's :class:`~trajplate.pipelines.base.TrajPipeline` interface.

``load`` builds SVD-XT + the authors' branch (:mod:`.loading`); ``prepare`` computes the shot's exact scene-flow
tracks (:mod:`trajplate.conditioning.trajectory_attention`) or reads the authors' track files; ``generate`` samples
with one CPU ``torch.Generator`` seeded from ``params.seed`` that draws, like the authors' single global stream, the
noise augmentation, the initial latents and then every per-call trajectory sub-sampling.

Where we differ from the authors, knowingly: the temporal-context order defaults to diffusers' (``authors_parity``
restores theirs, see :mod:`.unet`); no NVS-Solver; the first frame is the shot's render, not an estimated scene.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import PIL.Image
import torch
from pydantic import BaseModel, ConfigDict, Field

from ...conditioning import trajectory_attention as cond
from ...params import GenerateParams, MemoryMode
from ...presets import Preset
from ..base import GeneratedVideo, PipelineInputError, ProgressFn, TrajPipeline
from ..common import (
    LOCAL_ONLY,
    apply_memory_mode,
    bytes_on_device,
    check_memory_mode,
    denoising_callback,
    parse_options,
    require_first_frame,
    resolve_guidance_ramp,
    resolve_steps,
    to_uint8_video,
)
from . import tiny
from .attention import TrajectoryControl
from .loading import load_pipeline
from .pipeline import TrajectoryAttentionSVDPipeline


class TrajectoryAttentionOptions(BaseModel):
    """Job options specific to Trajectory Attention (``GenerateParams.options``)."""

    model_config = ConfigDict(extra="forbid")

    width: int | None = Field(None, ge=64, le=2048, multiple_of=64, description="output width (default: native 1024)")
    height: int | None = Field(None, ge=64, le=2048, multiple_of=64, description="output height (default: 576)")
    tracks_dir: str | None = Field(
        None, json_schema_extra=LOCAL_ONLY,
        description="folder on the machine running the job with the authors' trans_coordinates.npy / trans_valid.npy "
                    "to use instead of the shot's exact tracks (the first frame still comes from the shot); "
                    "`trajplate run` only, the HTTP API refuses it")
    trajectories: bool = Field(True, description="false: run plain SVD-XT (branch off), for comparisons")
    grid_step: int = Field(cond.GRID_STEP, ge=1, le=64, description="query grid cell, pixels at the output size")
    grid_draws: int = Field(cond.GRID_DRAWS, ge=1, le=16, description="jittered draws of the query grid")
    fps: int = Field(7, ge=2, le=60, description="SVD fps conditioning (the UNet sees fps - 1)")
    motion_bucket_id: int = Field(127, ge=0, le=1023)
    noise_aug_strength: float = Field(0.02, ge=0.0, le=1.0)
    decode_chunk_size: int = Field(8, ge=1, le=25, description="frames per VAE decode (memory vs. consistency)")
    authors_parity: bool = Field(False, description="the authors' CFG temporal-context order (reproduces their samples)")


@dataclass
class TrajectoryAttentionInputs:
    """image: the first frame resized to ``size`` (no crop, as the authors). tracks: in the ``size`` frame or the
    authors' 1024×576 one. shot_frames: (25,) float64 Blender frame per generated frame."""

    image: PIL.Image.Image
    tracks: cond.Tracks
    shot_frames: np.ndarray
    size: tuple[int, int]
    options: TrajectoryAttentionOptions


class TrajectoryAttention(TrajPipeline):
    """Loaded Trajectory Attention (SVD-XT + 16 ``attn_trajectory`` modules) on one device in one memory mode."""

    id = "trajectory-attention"
    Options = TrajectoryAttentionOptions

    def __init__(self, pipe: TrajectoryAttentionSVDPipeline, preset: Preset, device: torch.device,
                 memory_mode: MemoryMode, applied_memory_mode: str):
        super().__init__(pipe, preset, device, memory_mode, applied_memory_mode)

    @classmethod
    def load(cls, preset: Preset, base_dir: Path, adapter_dir: Path, *, device: str | torch.device = "cpu",
             dtype: torch.dtype | None = None, memory_mode: MemoryMode = "resident",
             variant: str | None = None) -> TrajectoryAttention:
        """Build from ``base_dir`` (SVD-XT diffusers folder) and ``adapter_dir`` (holding ``trajattn_temp.pth``).

        dtype: default fp16 on CUDA (the authors'), float32 on CPU. memory_mode: DESIGN's modes; without CUDA only
        ``resident`` can act, so the others are validated and recorded but not applied.
        Raises PipelineInputError for a variant (there is one adapter) or an unknown memory mode, and
        :class:`~.convert.AdapterFormatError` / FileNotFoundError for weights that do not match.
        """
        device = torch.device(device)
        if variant is not None:
            raise PipelineInputError(f"variant: Trajectory Attention has a single adapter; got {variant!r}, leave it "
                                     "unset")
        check_memory_mode(memory_mode)
        dtype = dtype or (torch.float16 if device.type == "cuda" else torch.float32)
        pipe = load_pipeline(Path(base_dir), Path(adapter_dir), dtype)
        applied = apply_memory_mode(pipe, memory_mode, device)
        return cls(pipe, preset, device, memory_mode, applied)

    def _size(self, options: TrajectoryAttentionOptions) -> tuple[int, int]:
        return options.width or self.preset.native.width, options.height or self.preset.native.height

    def _tracks(self, shot, params: GenerateParams, options: TrajectoryAttentionOptions) -> tuple[cond.Tracks,
                                                                                                   np.ndarray]:
        size = self._size(options)
        if options.tracks_dir is None:
            return cond.shot_tracks(shot, size, num_frames=cond.NUM_FRAMES, step=options.grid_step,
                                    draws=options.grid_draws, seed=params.seed)
        tracks = cond.load_authors_tracks(Path(options.tracks_dir), num_frames=cond.NUM_FRAMES)
        return tracks, shot.frame_numbers[cond.time_map(shot.time_s, cond.NUM_FRAMES)].astype(np.float64)

    def prepare(self, shot, params: GenerateParams) -> TrajectoryAttentionInputs:
        """The first frame at the output size and the tracks. Raises PipelineInputError naming the missing field."""
        options = parse_options(TrajectoryAttentionOptions, params)
        first_frame = require_first_frame(shot)
        width, height = self._size(options)
        tracks, shot_frames = self._tracks(shot, params, options)
        scale = self.pipe.vae_scale_factor
        needed = 2 * (height // scale) * (width // scale)
        if tracks.num_tracks < needed:
            raise PipelineInputError(
                f"options.grid_step/grid_draws: {tracks.num_tracks} tracks, but trajectory attention at "
                f"{width}x{height} needs at least {needed} (2 per latent pixel); use a smaller grid_step or more "
                "grid_draws (or more tracks in tracks_dir)")
        image = PIL.Image.fromarray(first_frame).resize((width, height), PIL.Image.BICUBIC)
        return TrajectoryAttentionInputs(image, tracks, shot_frames, (width, height), options)

    def generate(self, inputs: TrajectoryAttentionInputs, params: GenerateParams,
                 progress: ProgressFn) -> GeneratedVideo:
        """25 frames at ``inputs.size``; ``params.guidance`` is the top of the per-frame CFG ramp (default 3, from
        the preset's 1). Raises whatever ``progress`` raises (:class:`Cancelled` stops before decoding)."""
        steps = resolve_steps(params, self.preset)
        guidance_min, guidance_max = resolve_guidance_ramp(params, self.preset)
        options = inputs.options
        generator = torch.Generator("cpu").manual_seed(params.seed)
        progress("conditioning", 0, 1)
        control = None
        if options.trajectories:
            device = self.pipe._execution_device
            control = TrajectoryControl(torch.from_numpy(inputs.tracks.coords).to(device),
                                        torch.from_numpy(inputs.tracks.valid).to(device), inputs.tracks.size, generator)

        width, height = inputs.size
        video = self.pipe(
            inputs.image, trajectories=control, authors_parity=options.authors_parity,
            height=height, width=width, num_frames=inputs.tracks.num_frames, num_inference_steps=steps,
            min_guidance_scale=guidance_min, max_guidance_scale=guidance_max, fps=options.fps,
            motion_bucket_id=options.motion_bucket_id, noise_aug_strength=options.noise_aug_strength,
            decode_chunk_size=options.decode_chunk_size, generator=generator, output_type="np",
            callback_on_step_end=denoising_callback(progress, steps),
        ).frames[0]
        progress("decoding", 1, 1)
        return GeneratedVideo(
            frames=to_uint8_video(video),
            fps=self.preset.native.fps,
            shot_frames=inputs.shot_frames,
            metadata={
                "pipeline": self.id, "seed": params.seed, "steps": steps,
                "guidance": [guidance_min, guidance_max], "size": [width, height],
                "tracks": {"count": inputs.tracks.num_tracks, "source": options.tracks_dir or "shot",
                           "visible_fraction": float(inputs.tracks.valid.mean())},
                "trajectories": options.trajectories, "authors_parity": options.authors_parity,
                "fps_conditioning": options.fps, "motion_bucket_id": options.motion_bucket_id,
                "noise_aug_strength": options.noise_aug_strength, "decode_chunk_size": options.decode_chunk_size,
                "time_map": self.preset.time_map, "memory_mode": self.memory_mode,
                "applied_memory_mode": self.applied_memory_mode,
                "licence": {"base": self.preset.licence.base, "adapter": self.preset.licence.adapter},
            },
        )

    def preview(self, shot, params: GenerateParams) -> np.ndarray:
        """The tracks drawn over the first frame, (25, H, W, 3) uint8 at the shot's size."""
        options = parse_options(TrajectoryAttentionOptions, params)
        first_frame = require_first_frame(shot)
        return cond.draw_preview(first_frame, self._tracks(shot, params, options)[0])

    def resident_bytes(self) -> int:
        return bytes_on_device((self.pipe.image_encoder, self.pipe.vae, self.pipe.unet), self.device)

    @classmethod
    def build_tiny(cls, root: Path) -> None:
        """Tiny random SVD + branch weights in the real layouts (:mod:`.tiny`)."""
        tiny.build(Path(root))
