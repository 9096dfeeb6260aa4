"""MagicMotion behind TrajPlate's :class:`~trajplate.pipelines.base.TrajPipeline` interface.

``load`` builds the pipeline from the THUDM base folder (diffusers layout) and the authors' adapter folder
(``stage1/mask.pt`` | ``stage2/box.pt`` | ``stage3/sparse_box.pt``; one stage per loaded pipeline = the variant);
``prepare`` draws the trajectory map from the shot (:mod:`trajplate.conditioning.magicmotion`); ``generate`` samples
with a CPU ``torch.Generator`` seeded from ``params.seed`` (the authors' choice, so seeds match across devices).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import diffusers
import numpy as np
import PIL.Image
import torch
from diffusers.hooks import apply_group_offloading
from pydantic import BaseModel, ConfigDict, Field

from ...conditioning import magicmotion as cond
from ...params import GenerateParams, MemoryMode
from ...presets import Preset
from ..base import GeneratedVideo, PipelineInputError, ProgressFn, TrajPipeline
from ..common import (
    apply_memory_mode,
    bytes_on_device,
    check_memory_mode,
    denoising_callback,
    parse_options,
    resolve_guidance,
    resolve_negative_prompt,
    resolve_steps,
    resolve_strength,
    shot_prompt,
    to_uint8_video,
)
from . import tiny
from .checkpoint import load_strict, read_state_dict
from .models import MagicMotionTransformer3DModel, TrajectoryControlNet
from .pipeline import MagicMotionPipeline


class MagicMotionOptions(BaseModel):
    """Job options specific to MagicMotion (``GenerateParams.options``)."""

    model_config = ConfigDict(extra="forbid")

    key_frames: list[int] | None = Field(
        None, description="sparse_box only: Blender frame numbers that carry boxes (at most 10; default: the second "
                          "and the last generated frame)")
    entities: list[int] | None = Field(None, description="entity ids to animate (default: all)")
    block_strength: list[float] | None = Field(
        None, description="one ControlNet weight per block (42 for the real model), multiplied by `strength`")
    vae_tiling: bool = Field(True, description="tiled VAE encode/decode (the authors' setting; less memory)")


@dataclass
class MagicMotionInputs:
    conditioning: cond.MagicMotionConditioning
    prompt: str
    negative_prompt: str
    options: MagicMotionOptions


class MagicMotion(TrajPipeline):
    """Loaded MagicMotion: one stage (variant) on one device in one memory mode."""

    id = "magicmotion"
    Options = MagicMotionOptions

    def __init__(self, pipe: MagicMotionPipeline, preset: Preset, variant: str, device: torch.device,
                 memory_mode: MemoryMode, applied_memory_mode: str):
        super().__init__(pipe, preset, device, memory_mode, applied_memory_mode)
        self.variant = variant

    @classmethod
    def load(cls, preset: Preset, base_dir: Path, adapter_dir: Path, *, device: str | torch.device = "cpu",
             dtype: torch.dtype | None = None, memory_mode: MemoryMode = "resident",
             variant: str | None = None) -> MagicMotion:
        """Build from ``base_dir`` (THUDM/CogVideoX-5b-I2V layout) and ``adapter_dir`` (quanhaol/MagicMotion layout).

        dtype: default bf16 on CUDA (the authors'), float32 on CPU. memory_mode: DESIGN's modes; without CUDA only
        ``resident`` can act, so the others are validated and recorded but not applied.
        Raises PipelineInputError for an unknown variant or memory mode and
        :class:`~.checkpoint.CheckpointError` when the adapter file is missing or does not match the base.
        """
        device = torch.device(device)
        variant = variant or preset.default_variant
        if variant not in preset.variants:
            raise PipelineInputError(f"variant: {variant!r} is not a MagicMotion stage; valid: {', '.join(preset.variants)}")
        check_memory_mode(memory_mode)
        dtype = dtype or (torch.bfloat16 if device.type == "cuda" else torch.float32)

        transformer = MagicMotionTransformer3DModel.from_pretrained(base_dir, subfolder="transformer", dtype=dtype)
        with torch.device("meta"):  # 5B parameters: build without allocating, then assign the checkpoint's tensors
            controlnet = TrajectoryControlNet.from_transformer_config(transformer.config)
        ckpt = Path(adapter_dir) / preset.variants[variant].files[0]
        load_strict(controlnet, read_state_dict(ckpt), str(ckpt), dtype)
        controlnet.eval()
        scheduler = getattr(diffusers, preset.defaults.scheduler).from_pretrained(base_dir, subfolder="scheduler")
        pipe = MagicMotionPipeline.from_pretrained(
            base_dir, transformer=transformer, controlnet=controlnet, scheduler=scheduler, dtype=dtype
        )
        pipe.set_progress_bar_config(disable=True)
        applied = apply_memory_mode(pipe, memory_mode, device, group_offload=group_offload)
        return cls(pipe, preset, variant, device, memory_mode, applied)

    @property
    def native_size(self) -> tuple[int, int, int]:
        """(frames, height, width) the loaded transformer generates (49, 480, 720 for the real weights)."""
        c = self.pipe.transformer.config
        s = self.pipe.vae_scale_factor_spatial
        return c.sample_frames, c.sample_height * s, c.sample_width * s

    def _conditioning(self, shot, params: GenerateParams, options: MagicMotionOptions) -> cond.MagicMotionConditioning:
        if params.variant is not None and params.variant != self.variant:
            raise PipelineInputError(
                f"variant: this pipeline is loaded with stage {self.variant!r}, the job asks for {params.variant!r}. "
                "Fix: load MagicMotion with that variant (one stage per loaded pipeline)."
            )
        frames, height, width = self.native_size
        return cond.build_conditioning(
            shot, self.variant, height=height, width=width, num_frames=frames,
            key_frames=options.key_frames, entities=options.entities,
        )

    def prepare(self, shot, params: GenerateParams) -> MagicMotionInputs:
        options = parse_options(MagicMotionOptions, params)
        n_blocks = len(self.pipe.controlnet.transformer_blocks)
        if options.block_strength is not None and len(options.block_strength) != n_blocks:
            raise PipelineInputError(
                f"options.block_strength: {len(options.block_strength)} weights given; the ControlNet has {n_blocks} "
                "blocks. Fix: give one weight per block, or leave it out and use `strength`."
            )
        return MagicMotionInputs(
            conditioning=self._conditioning(shot, params, options),
            prompt=shot_prompt(shot, params),
            negative_prompt=resolve_negative_prompt(params, self.preset),
            options=options,
        )

    def generate(self, inputs: MagicMotionInputs, params: GenerateParams, progress: ProgressFn) -> GeneratedVideo:
        steps = resolve_steps(params, self.preset)
        guidance = resolve_guidance(params, self.preset)
        strength = resolve_strength(params, self.preset)
        block = inputs.options.block_strength
        weights = strength if block is None else [strength * w for w in block]
        c = inputs.conditioning
        if inputs.options.vae_tiling:
            self.pipe.vae.enable_tiling()
        else:
            self.pipe.vae.disable_tiling()

        progress("conditioning", 0, 1)
        frames, height, width = self.native_size
        video = self.pipe(
            image=PIL.Image.fromarray(c.first_frame),
            trajectory_maps=[PIL.Image.fromarray(f) for f in c.trajectory_map],
            prompt=inputs.prompt,
            negative_prompt=inputs.negative_prompt,
            height=height, width=width, num_frames=frames,
            num_inference_steps=steps,
            guidance_scale=guidance,
            generator=torch.Generator("cpu").manual_seed(params.seed),
            controlnet_weights=weights,
            callback_on_step_end=denoising_callback(progress, steps),
        )
        if len(video) != len(c.shot_frames):  # e.g. a model whose sample_frames is not 8k+1 (see .tiny)
            raise RuntimeError(f"decoded {len(video)} frames for a time map of {len(c.shot_frames)}")
        return GeneratedVideo(
            frames=to_uint8_video(video),
            fps=self.preset.native.fps,
            shot_frames=c.shot_frames,
            metadata={
                "pipeline": self.id, "variant": self.variant, "mode": c.mode, "prompt": inputs.prompt,
                "negative_prompt": inputs.negative_prompt, "seed": params.seed, "steps": steps,
                "guidance": guidance, "strength": strength, "block_strength": block,
                "entities": c.entity_ids, "key_frames": c.key_frames, "time_map": self.preset.time_map,
                "memory_mode": self.memory_mode, "applied_memory_mode": self.applied_memory_mode,
                "vae_tiling": inputs.options.vae_tiling,
                "licence": {"base": self.preset.licence.base, "adapter": self.preset.licence.adapter},
            },
        )

    def preview(self, shot, params: GenerateParams) -> np.ndarray:
        return cond.preview(self._conditioning(shot, params, parse_options(MagicMotionOptions, params)))

    def resident_bytes(self) -> int:
        pipe = self.pipe
        return bytes_on_device((pipe.text_encoder, pipe.vae, pipe.transformer, pipe.controlnet), self.device)

    @classmethod
    def build_tiny(cls, root: Path, *, frames: int = 17, height: int = 96, width: int = 144) -> None:
        """Tiny random MagicMotion in the real layouts (see :mod:`.tiny`).

        Learned positional embeddings fix the only usable size, so the tiny model's size is its output size; the
        default 17×96×144 (same 2:3 aspect as 480×720) keeps the demo and service tests to seconds on a CPU. Pass
        ``frames=49, height=480, width=720`` for a native-size tiny model.
        """
        tiny.build(Path(root), frames=frames, height=height, width=width)


def group_offload(pipe: MagicMotionPipeline, device: torch.device) -> None:
    """MagicMotion's ``group_offload``: block level, one block per group; the small VAE stays on the GPU.

    T5 and the transformer use CUDA streams (the next block uploads while the current one runs). The ControlNet
    cannot: diffusers learns the prefetch order from the blocks run inside one top-level call, and in lock-step its
    blocks run after that call returns, so it onloads each block when it runs.
    """
    for module, stream in ((pipe.text_encoder, True), (pipe.transformer, True), (pipe.controlnet, False)):
        apply_group_offloading(module, onload_device=device, offload_device=torch.device("cpu"),
                               offload_type="block_level", num_blocks_per_group=1, use_stream=stream)
    pipe.vae.to(device)
