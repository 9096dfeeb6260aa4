"""TrajectoryCrafter behind TrajPlate's :class:`~trajplate.pipelines.base.TrajPipeline` interface.

``load`` builds the pipeline from CogVideoX-Fun-V1.1-5b-InP (diffusers layout) and the authors' transformer folder;
``prepare`` renders the source clip into the redirect camera (:mod:`trajplate.conditioning.trajectorycrafter`) —
the shot's own render with its exact depth, or a take with Depth Anything V2 depth aligned to frame 0. A take arrives
as the job's ``source_video`` file (uploaded with ``POST /v1/jobs``, or ``trajplate run --source-video``) or, for the
CLI only, as ``options.source_video``; ``generate``
inpaints with a generator on the pipeline's device seeded from ``params.seed`` (the authors use a CUDA generator).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import av
import cv2
import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from ...conditioning import trajectorycrafter as cond
from ...params import GenerateParams, MemoryMode
from ...presets import Preset
from ..base import GeneratedVideo, PipelineInputError, ProgressFn, TrajPipeline
from ..common import (
    LOCAL_ONLY,
    REPO_ID_OVER_HTTP,
    apply_memory_mode,
    bytes_on_device,
    check_memory_mode,
    denoising_callback,
    parse_options,
    resolve_guidance,
    resolve_negative_prompt,
    resolve_steps,
    shot_prompt,
    to_uint8_video,
)
from .depth import DepthEstimator
from .loading import load_pipeline, save_tiny_weights
from .pipeline import TrajectoryCrafterPipeline

QUALITY_SUFFIX = (". The video is of high quality, and the view is very clear. High quality, masterpiece, best "
                  "quality, highres, ultra-detailed, fantastic.")
TINY_DEPTH_FOLDER = "depth"  # beside base/ and adapter/ in tiny weights (PIPELINE.build_tiny)


class TrajectoryCrafterOptions(BaseModel):
    """Job options specific to TrajectoryCrafter (``GenerateParams.options``)."""

    model_config = ConfigDict(extra="forbid")

    mode: Literal["gradual", "direct"] = Field("gradual", description="the authors' modes (see docs/pipelines)")
    target_w2c: list[Any] | None = Field(
        None, description="redirect camera: 4×4 world-to-camera matrices, OpenCV axes, Blender world, metres; one "
                          "(static), one per exported shot frame, or one per output frame")
    target_K: list[Any] | None = Field(
        None, description="redirect camera K (3×3, pixels at the shot resolution, pixel-corner origin), one or one "
                          "per frame like target_w2c; default: the shot camera's K")
    target_pose: list[float] | None = Field(
        None, description="the authors' target [θ°, φ°, r, x m, y m]: orbit up/right around the centre pixel of "
                          "frame 0, dolly r × its distance, pan; instead of target_w2c")
    source_video: str | None = Field(
        None, json_schema_extra=LOCAL_ONLY,
        description="path of a take (video file) on the machine running the job, to re-shoot instead of the shot's "
                    "render; its depth is estimated and aligned to the exact depth of frame 0; `trajplate run` only, "
                    "the HTTP API refuses it")
    depth_model: str | None = Field(
        None, json_schema_extra=REPO_ID_OVER_HTTP,
        description="depth model for takes: a Hugging Face repo id (in the server's cache), or a folder with "
                    "`trajplate run` only (default: the preset's)")
    clean_holes: bool = Field(False, description="the authors' --mask: grow the hole mask 5×5 and inpaint those "
                                                  "pixels too (hides splat fringes at depth edges)")
    quality_suffix: bool = Field(True, description="append the authors' quality suffix to the prompt")
    vae_tiling: bool | None = Field(None, description="tiled VAE decode; default: on in offload modes only")


@dataclass
class CrafterInputs:
    conditioning: cond.CrafterConditioning
    prompt: str
    negative_prompt: str
    options: TrajectoryCrafterOptions
    source: Literal["render", "take"] = "render"
    depth_alignment: tuple[float, float] | None = None


def compose_prompt(shot, params: GenerateParams, suffix: bool) -> str:
    """params.prompt, else the shot's scene prompt, else its entity and location prompts; plus the authors' suffix
    (their BLIP-2 caption has no final period; the suffix starts with one)."""
    text = shot_prompt(shot, params, sep=", ")
    return text.rstrip(". ") + QUALITY_SUFFIX if suffix else text


def read_video(path: str | Path, field: str = "options.source_video") -> np.ndarray:
    """(T, H, W, 3) uint8 RGB frames of a video file. Raises PipelineInputError naming ``field``."""
    file = Path(path)
    if not file.is_file():
        raise PipelineInputError(f"{field}: {str(path)!r} is not a file on the machine running the job")
    try:
        with av.open(str(file)) as container:
            frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    except (av.FFmpegError, ValueError) as exc:
        raise PipelineInputError(f"{field}: {str(path)!r} is not a readable video ({exc})") from exc
    if not frames:
        raise PipelineInputError(f"{field}: {str(path)!r} has no frames")
    return np.stack(frames)


class TrajectoryCrafter(TrajPipeline):
    """Loaded TrajectoryCrafter on one device in one memory mode."""

    id = "trajectorycrafter"
    Options = TrajectoryCrafterOptions
    input_files = ("source_video",)

    def __init__(self, pipe: TrajectoryCrafterPipeline, preset: Preset, device: torch.device, memory_mode: MemoryMode,
                 applied_memory_mode: str, depth_default: str, depth_revision: str):
        super().__init__(pipe, preset, device, memory_mode, applied_memory_mode)
        self.depth_default, self.depth_revision = depth_default, depth_revision
        self._depth: DepthEstimator | None = None

    @classmethod
    def load(cls, preset: Preset, base_dir: Path, adapter_dir: Path, *, device: str | torch.device = "cpu",
             dtype: torch.dtype | None = None, memory_mode: MemoryMode = "resident",
             variant: str | None = None) -> TrajectoryCrafter:
        """Build from ``base_dir`` (CogVideoX-Fun-V1.1-5b-InP) and ``adapter_dir`` (TrajectoryCrafter transformer).

        dtype: default bf16 on CUDA (the authors'), float32 on CPU. memory_mode: DESIGN's modes; without CUDA only
        ``resident`` can act (the others are validated and recorded). Raises PipelineInputError for an unknown memory
        mode or a variant (there are none) and WeightsError for missing folders or keys.
        """
        check_memory_mode(memory_mode)
        if variant is not None:
            raise PipelineInputError(f"variant: TrajectoryCrafter has no variants; got {variant!r}")
        device = torch.device(device)
        dtype = dtype or (torch.bfloat16 if device.type == "cuda" else torch.float32)
        pipe = load_pipeline(base_dir, adapter_dir, scheduler=preset.defaults.scheduler, dtype=dtype)
        pipe.set_progress_bar_config(disable=True)
        applied = apply_memory_mode(pipe, memory_mode, device)
        tiny_depth = Path(base_dir).parent / TINY_DEPTH_FOLDER
        ref = preset.extra_weights.get("depth")
        if tiny_depth.is_dir():  # tiny weights carry their own depth model
            depth, revision = str(tiny_depth), "main"
        elif ref is not None:
            depth, revision = ref.repo_id, ref.revision
        else:
            depth, revision = "", "main"
        return cls(pipe, preset, device, memory_mode, applied, depth, revision)

    @property
    def native_size(self) -> tuple[int, int, int]:
        """(frames, height, width) the loaded transformer generates (49, 384, 672 for the real weights)."""
        c = self.pipe.transformer.config
        s = self.pipe.vae_scale_factor_spatial
        return c.sample_frames, c.sample_height * s, c.sample_width * s

    def _source(self, shot, options: TrajectoryCrafterOptions,
                source_video: Path | None) -> tuple[cond.Source, tuple[float, float] | None]:
        if source_video is not None and options.source_video is not None:
            raise PipelineInputError("options.source_video: the job already has a source video file; give one take")
        if source_video is None and options.source_video is None:
            return cond.source_from_shot(shot), None
        if shot.depth is None:
            raise PipelineInputError("source_video: aligning the take's depth needs the exact depth of frame 0. Fix: "
                                     "export with the depth pass on")
        frames = (read_video(source_video, "source_video") if source_video is not None
                  else read_video(options.source_video))
        if frames.shape[1:3] != (shot.height, shot.width):
            frames = np.stack([cv2.resize(f, (shot.width, shot.height), interpolation=cv2.INTER_AREA) for f in frames])
        depth, a, b = cond.align_inverse_depth(self._depth_model(options)(frames), shot.depth[0])
        position = cond.time_map(shot.num_frames, len(frames))  # a take spans the shot evenly (its own time map)
        source = cond.Source(rgb=frames, depth=depth, w2c=shot.camera_w2c_opencv[position],
                             K=shot.intrinsics[position], frame_numbers=shot.frame_numbers[position].astype(np.float64))
        return source, (a, b)

    def _depth_model(self, options: TrajectoryCrafterOptions) -> DepthEstimator:
        name = options.depth_model or self.depth_default
        if not name:
            raise PipelineInputError("depth_model: the preset names no depth model; pass options.depth_model")
        if self._depth is None or options.depth_model is not None:
            self._depth = DepthEstimator(name, revision=self.depth_revision, device=self.device)
        return self._depth

    def prepare(self, shot, params: GenerateParams, source_video: Path | None = None) -> CrafterInputs:
        """Conditioning. ``source_video``: the job's take file (see :attr:`input_files`); None re-shoots the shot's
        render unless ``options.source_video`` names a take. Raises PipelineInputError naming the field."""
        options = parse_options(TrajectoryCrafterOptions, params)
        source, alignment = self._source(shot, options, source_video)
        target = cond.Target(
            w2c=None if options.target_w2c is None else _matrices("target_w2c", options.target_w2c, 4),
            K=None if options.target_K is None else _matrices("target_K", options.target_K, 3),
            pose=options.target_pose,
        )
        frames, height, width = self.native_size
        conditioning = cond.build_conditioning(
            source, target, shot_frame_count=shot.num_frames, mode=options.mode, height=height, width=width,
            num_frames=frames, device=self.device if self.device.type == "cuda" else "cpu",
            clean_holes=options.clean_holes,
        )
        return CrafterInputs(
            conditioning=conditioning, prompt=compose_prompt(shot, params, options.quality_suffix),
            negative_prompt=resolve_negative_prompt(params, self.preset),
            options=options, source="render" if alignment is None else "take", depth_alignment=alignment,
        )

    def generate(self, inputs: CrafterInputs, params: GenerateParams, progress: ProgressFn) -> GeneratedVideo:
        steps = resolve_steps(params, self.preset)
        guidance = resolve_guidance(params, self.preset)
        tiling = inputs.options.vae_tiling
        if tiling if tiling is not None else self.applied_memory_mode != "resident":
            self.pipe.vae.enable_tiling()
        else:
            self.pipe.vae.disable_tiling()
        c = inputs.conditioning

        progress("conditioning", 0, 1)
        generator = torch.Generator(self.device).manual_seed(params.seed)
        video = self.pipe(
            render=torch.from_numpy(c.render), holes=torch.from_numpy(c.holes),
            reference=torch.from_numpy(c.reference), prompt=inputs.prompt, negative_prompt=inputs.negative_prompt,
            num_inference_steps=steps, guidance_scale=guidance, generator=generator, callback_on_step_end=denoising_callback(progress, steps),
        )
        frames = to_uint8_video(video[c.keep:])
        return GeneratedVideo(
            frames=frames, fps=self.preset.native.fps, shot_frames=c.shot_frames,
            metadata={
                "pipeline": self.id, "mode": c.mode, "prompt": inputs.prompt,
                "negative_prompt": inputs.negative_prompt, "seed": params.seed, "steps": steps, "guidance": guidance,
                "source": inputs.source,
                "depth_alignment": inputs.depth_alignment, "hole_fraction": float(c.holes[c.keep:].mean()),
                "time_map": self.preset.time_map, "memory_mode": self.memory_mode,
                "applied_memory_mode": self.applied_memory_mode,
                "licence": {"base": self.preset.licence.base, "adapter": self.preset.licence.adapter,
                            "research_only": self.preset.licence.research_only},
            },
        )

    def preview(self, shot, params: GenerateParams) -> np.ndarray:
        return cond.preview(self.prepare(shot, params).conditioning)

    def resident_bytes(self) -> int:
        return bytes_on_device((self.pipe.text_encoder, self.pipe.vae, self.pipe.transformer), self.device)

    @classmethod
    def build_tiny(cls, root: Path) -> None:
        """Tiny random TrajectoryCrafter in the real layouts (native 384×672 latent grid), plus ``root/depth``."""
        save_tiny_weights(Path(root))


def _matrices(name: str, value: list[Any], n: int) -> np.ndarray:
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise PipelineInputError(f"options.{name}: not a list of {n}×{n} number matrices ({exc})") from exc
    if array.shape[-2:] != (n, n) or array.ndim not in (2, 3):
        raise PipelineInputError(f"options.{name}: shape {array.shape}; expected ({n}, {n}) or (L, {n}, {n})")
    return array.reshape(-1, n, n)
