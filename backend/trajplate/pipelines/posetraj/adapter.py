"""PoseTraj behind TrajPlate's :class:`~trajplate.pipelines.base.TrajPipeline` interface.

``load`` builds SVD + a Traj-ControlNet folder (:mod:`.loading`; no public checkpoint exists — train one with
``trajplate posetraj-train``); ``prepare`` draws the shot's exact drag tracks as the authors' maps
(:mod:`trajplate.conditioning.posetraj`); ``generate`` samples with a CPU ``torch.Generator`` seeded from
``params.seed`` (the authors set no seed).

Where we differ from the authors, knowingly: tracks come from the shot (exact, visibility-aware) instead of
CoTracker; segments with an invisible end are not drawn; the camera vector convention is ours (theirs is TRAM's,
unverified); diffusers' temporal-context order (see :mod:`.models`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import PIL.Image
import torch
from pydantic import BaseModel, ConfigDict, Field

from ...conditioning import posetraj as cond
from ...params import GenerateParams, MemoryMode
from ...presets import Preset
from ..base import GeneratedVideo, PipelineInputError, ProgressFn, TrajPipeline
from ..common import (
    apply_memory_mode,
    bytes_on_device,
    check_memory_mode,
    denoising_callback,
    parse_options,
    require_first_frame,
    resolve_guidance_ramp,
    resolve_steps,
    resolve_strength,
    to_uint8_video,
)
from . import tiny
from .loading import load_pipeline
from .pipeline import ADDED_TIME_FPS, MOTION_BUCKET_ID, NOISE_AUG_STRENGTH, StableVideoDiffusionPipelineControlNet


class PoseTrajOptions(BaseModel):
    """Job options specific to PoseTraj (``GenerateParams.options``)."""

    model_config = ConfigDict(extra="forbid")

    width: int | None = Field(None, ge=64, le=2048, multiple_of=64, description="output width (default: native 576)")
    height: int | None = Field(None, ge=64, le=2048, multiple_of=64, description="output height (default: 320)")
    surface_points: int = Field(cond.SURFACE_POINTS, ge=0, le=32,
                                description="tracked surface points per entity besides its origin")
    camera: bool = Field(True, description="feed the shot's camera motion to a camera ControlNet (ignored otherwise)")
    decode_chunk_size: int = Field(8, ge=1, le=14, description="frames per VAE decode (memory vs. consistency)")


@dataclass
class PoseTrajInputs:
    """image: first frame at ``size`` (no crop). maps: (14, H, W, 3) uint8 RGB trajectory maps. camera: (14, 12)
    float32 or None. shot_frames: (14,) float64 Blender frame per generated frame."""

    image: PIL.Image.Image
    maps: np.ndarray
    camera: np.ndarray | None
    shot_frames: np.ndarray
    size: tuple[int, int]
    options: PoseTrajOptions
    num_tracks: int


class PoseTraj(TrajPipeline):
    """Loaded PoseTraj (SVD 14 frames + Traj-ControlNet) on one device in one memory mode."""

    id = "posetraj"
    Options = PoseTrajOptions

    def __init__(self, pipe: StableVideoDiffusionPipelineControlNet, preset: Preset, device: torch.device,
                 memory_mode: MemoryMode, applied_memory_mode: str):
        super().__init__(pipe, preset, device, memory_mode, applied_memory_mode)

    @property
    def has_camera(self) -> bool:
        return bool(self.pipe.controlnet.config.camera_dim)

    @classmethod
    def load(cls, preset: Preset, base_dir: Path, adapter_dir: Path, *, device: str | torch.device = "cpu",
             dtype: torch.dtype | None = None, memory_mode: MemoryMode = "resident",
             variant: str | None = None) -> PoseTraj:
        """Build from ``base_dir`` (SVD img2vid diffusers folder) and ``adapter_dir`` (a Traj-ControlNet folder).

        dtype: default fp16 on CUDA, float32 on CPU (the authors sample in fp32; fp16 halves memory). memory_mode:
        DESIGN's modes; without CUDA only ``resident`` acts, the others are validated and recorded.
        Raises PipelineInputError for a variant or unknown memory mode; ControlNetFormatError / FileNotFoundError
        for weights that do not match.
        """
        device = torch.device(device)
        if variant is not None:
            raise PipelineInputError(f"variant: PoseTraj loads whichever ControlNet folder is given; got {variant!r}, "
                                     "leave it unset")
        check_memory_mode(memory_mode)
        dtype = dtype or (torch.float16 if device.type == "cuda" else torch.float32)
        pipe = load_pipeline(Path(base_dir), Path(adapter_dir), dtype)
        return cls(pipe, preset, device, memory_mode, apply_memory_mode(pipe, memory_mode, device))

    def _size(self, options: PoseTrajOptions) -> tuple[int, int]:
        return options.width or self.preset.native.width, options.height or self.preset.native.height

    def prepare(self, shot, params: GenerateParams) -> PoseTrajInputs:
        """First frame, maps and camera at the output size. Raises PipelineInputError naming the field."""
        options = parse_options(PoseTrajOptions, params)
        first_frame = require_first_frame(shot)
        size = self._size(options)
        tracks, shot_frames = cond.shot_tracks(shot, num_frames=self.preset.native.frames,
                                               surface_points=options.surface_points)
        maps = cond.rasterise(tracks.rescaled(size))
        camera = (cond.shot_camera(shot, num_frames=self.preset.native.frames)
                  if options.camera and self.has_camera else None)
        image = PIL.Image.fromarray(first_frame).resize(size, PIL.Image.BICUBIC)
        return PoseTrajInputs(image, maps, camera, shot_frames, size, options, tracks.coords.shape[1])

    def generate(self, inputs: PoseTrajInputs, params: GenerateParams, progress: ProgressFn) -> GeneratedVideo:
        """14 frames at ``inputs.size``. ``params.guidance`` is the top of the per-frame CFG ramp (default 3, from the
        preset's 1); ``params.strength`` the ControlNet scale (default 1). Raises what ``progress`` raises
        (:class:`~trajplate.pipelines.base.Cancelled` stops before decoding)."""
        steps = resolve_steps(params, self.preset)
        guidance_min, guidance_max = resolve_guidance_ramp(params, self.preset)
        strength = resolve_strength(params, self.preset)
        generator = torch.Generator("cpu").manual_seed(params.seed)
        progress("conditioning", 0, 1)

        width, height = inputs.size
        maps = torch.from_numpy(cond.maps_to_tensor_range(inputs.maps))
        camera = None if inputs.camera is None else torch.from_numpy(inputs.camera)
        video = self.pipe(
            inputs.image, maps, camera=camera, controlnet_cond_scale=strength, height=height, width=width,
            num_frames=len(inputs.maps), num_inference_steps=steps, min_guidance_scale=guidance_min,
            max_guidance_scale=guidance_max, decode_chunk_size=inputs.options.decode_chunk_size, generator=generator,
            output_type="np", callback_on_step_end=denoising_callback(progress, steps),
        ).frames[0]
        progress("decoding", 1, 1)
        return GeneratedVideo(
            frames=to_uint8_video(video),
            fps=self.preset.native.fps,
            shot_frames=inputs.shot_frames,
            metadata={
                "pipeline": self.id, "seed": params.seed, "steps": steps, "guidance": [guidance_min, guidance_max],
                "strength": strength, "size": [width, height], "tracks": inputs.num_tracks,
                "camera": inputs.camera is not None, "fps_conditioning": ADDED_TIME_FPS,
                "motion_bucket_id": MOTION_BUCKET_ID, "noise_aug_strength": NOISE_AUG_STRENGTH,
                "decode_chunk_size": inputs.options.decode_chunk_size, "time_map": self.preset.time_map,
                "memory_mode": self.memory_mode, "applied_memory_mode": self.applied_memory_mode,
                "licence": {"base": self.preset.licence.base, "adapter": self.preset.licence.adapter},
            },
        )

    def preview(self, shot, params: GenerateParams) -> np.ndarray:
        """The trajectory maps over the first frame, (14, H, W, 3) uint8 at the shot's size."""
        options = parse_options(PoseTrajOptions, params)
        first_frame = require_first_frame(shot)
        tracks, _ = cond.shot_tracks(shot, num_frames=self.preset.native.frames,
                                     surface_points=options.surface_points)
        return cond.draw_preview(first_frame, cond.rasterise(tracks.rescaled(self._size(options))))

    def resident_bytes(self) -> int:
        pipe = self.pipe
        return bytes_on_device((pipe.image_encoder, pipe.vae, pipe.unet, pipe.controlnet), self.device)

    @classmethod
    def build_tiny(cls, root: Path) -> None:
        """Tiny random SVD + ControlNet weights in the real layouts (:mod:`.tiny`)."""
        tiny.build(Path(root))
