"""The 3DTrajMaster adapter behind TrajPlate's pipeline interface (DESIGN: anatomy of a pipeline).

Where we knowingly differ from the authors (docs/pipelines/trajmaster3d.md has the long form):

* Poses come from the shot (the artist's keyframed proxies, exact) instead of the 360Motion dataset at a hard-coded
  path; entity prompts come from the entities, the location from the shot.
* Annealed sampling keeps one transformer and switches the PEFT LoRA off (and drops the poses) after
  ``annealed_sample_step`` instead of holding a second, plain transformer: about 11 GB less VRAM in bf16. The LoRA
  is applied unfused, so outputs are numerically very close to, not bit-identical with, the authors' fused weights.
* The authors' CPU offload of everything but the plain transformer becomes one of TrajPlate's memory modes.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch
from diffusers import CogVideoXPipeline
from pydantic import BaseModel, ConfigDict, Field

from ...conditioning.trajmaster3d import MAX_ENTITY_TOKENS, TrajMasterInputs, condition, preview
from ...params import GenerateParams, MemoryMode
from ...presets import Preset
from ...shot import Shot
from .. import common
from ..base import GeneratedVideo, PipelineInputError, ProgressFn, TrajPipeline
from ..common import check_memory_mode, denoising_callback, effective_settings, parse_options, to_uint8_video
from .loading import load_pipeline, save_tiny_weights


class TrajMaster3DOptions(BaseModel):
    """Job options of 3DTrajMaster (``params.options``); defaults are the authors' README settings."""

    model_config = ConfigDict(extra="forbid")

    entities: list[int] | None = Field(
        None, description="entity ids to drive, in slot order (1-based, at most 3); default: all entities"
    )
    location_prompt: str | None = Field(None, description="overrides the shot's location ('desert', 'snowy street')")
    lora_scale: float = Field(0.6, ge=0.0, le=2.0, description="domain LoRA weight during the controlled steps")
    annealed_sample_step: int = Field(
        20, ge=-1, le=1000, description="steps 0..this follow the poses (injector + LoRA); later steps are plain"
    )
    use_dynamic_cfg: bool = Field(True, description="CogVideoX's cosine guidance ramp")


def apply_memory_mode(pipe: CogVideoXPipeline, mode: str, device: torch.device) -> str:
    """Place ``pipe`` on ``device`` in one of DESIGN's memory modes (:func:`~..common.apply_memory_mode`).

    Group offloading covers the VAE too, and offloading modes turn on VAE tiling and slicing, as the authors do; the
    authors' plain transformer copy (``transformer_ori``, bench and parity only) follows a resident pipeline.
    Returns the mode applied; raises PipelineInputError for an unknown mode.
    """
    applied = common.apply_memory_mode(pipe, mode, device, exclude_from_group_offload=())
    if applied == "resident":
        plain_copy = getattr(pipe, "transformer_ori", None)
        if plain_copy is not None:
            plain_copy.to(device)
        return applied
    pipe.vae.enable_tiling()
    pipe.vae.enable_slicing()
    return applied


class TrajMaster3D(TrajPipeline):
    """3DTrajMaster (ICLR 2025): up to three entities, each with a prompt and a 6-DoF path, on CogVideoX-5B."""

    id = "3dtrajmaster"
    Options = TrajMaster3DOptions

    @classmethod
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
    ) -> TrajMaster3D:
        """Load from ``base_dir`` (THUDM/CogVideoX-5b) and ``adapter_dir`` (KwaiVGI/3DTrajMaster, see loading.py).

        dtype: default bf16 on CUDA (the authors'), float32 on the CPU. Raises WeightsError on missing files or keys.
        """
        if variant is not None:
            raise PipelineInputError(f"variant: 3DTrajMaster has no variants (got {variant!r})")
        check_memory_mode(memory_mode)
        device = torch.device(device)
        dtype = dtype or (torch.bfloat16 if device.type == "cuda" else torch.float32)
        pipe = load_pipeline(Path(base_dir), Path(adapter_dir), dtype=dtype)
        return cls(pipe, preset, device, memory_mode, apply_memory_mode(pipe, memory_mode, device))

    @classmethod
    def build_tiny(cls, root: Path) -> None:
        save_tiny_weights(Path(root))

    def prepare(self, shot: Shot, params: GenerateParams) -> TrajMasterInputs:
        """Poses at the latent frames, entity prompts and the composed prompt (``params.prompt`` replaces it)."""
        options = parse_options(TrajMaster3DOptions, params)
        if params.strength is not None:
            raise PipelineInputError(
                "strength: 3DTrajMaster has no control weight; use options.lora_scale (domain LoRA, default 0.6) or "
                "options.annealed_sample_step (how many steps follow the poses, default 20)"
            )
        frames = self.pipe.native_size[0]
        inputs = condition(
            shot, entity_ids=options.entities, location_prompt=options.location_prompt, num_generated=frames,
            temporal_compression=self.pipe.vae_scale_factor_temporal,
        )
        counts = self.pipe.entity_token_counts(inputs.entity_prompts)
        for entity_id, count in zip(inputs.entity_ids, counts, strict=True):
            if count > MAX_ENTITY_TOKENS:
                name = shot.meta.entities[entity_id - 1].name
                raise PipelineInputError(
                    f"entities[{entity_id}].prompt: entity '{name}' prompt is {count} T5 tokens; the injector reads "
                    f"only the first {MAX_ENTITY_TOKENS}: shorten it to about 24 words"
                )
        if params.prompt is not None:
            inputs = dataclasses.replace(inputs, prompt=params.prompt)
        return inputs

    def generate(self, inputs: TrajMasterInputs, params: GenerateParams, progress: ProgressFn) -> GeneratedVideo:
        """Sample at the native size with the authors' annealed sampling; raises Cancelled from ``progress``."""
        options = parse_options(TrajMaster3DOptions, params)
        settings = effective_settings(params, self.preset, inputs.prompt)
        steps = settings["steps"]
        generator = torch.Generator().manual_seed(params.seed)  # a CPU generator, as the authors seed theirs

        progress("denoising", 0, steps)
        latents = self.pipe(
            inputs.prompt, inputs.entity_prompts, torch.from_numpy(inputs.pose_embeds)[None],
            negative_prompt=settings["negative_prompt"], num_inference_steps=steps,
            guidance_scale=settings["guidance"], use_dynamic_cfg=options.use_dynamic_cfg,
            annealed_sample_step=options.annealed_sample_step, lora_scale=options.lora_scale, generator=generator,
            output_type="latent", callback_on_step_end=denoising_callback(progress, steps),
        ).frames
        with torch.no_grad():
            video = self.pipe.video_processor.postprocess_video(self.pipe.decode_latents(latents), output_type="np")
        frames = to_uint8_video(video[0])
        progress("decoding", 1, 1)
        return GeneratedVideo(
            frames=frames, fps=self.preset.native.fps, shot_frames=inputs.shot_frames,
            metadata={
                "steps": steps, "guidance": settings["guidance"], "prompt": inputs.prompt,
                "negative_prompt": settings["negative_prompt"], "entity_ids": inputs.entity_ids,
                "entity_prompts": inputs.entity_prompts, "lora_scale": options.lora_scale,
                "annealed_sample_step": options.annealed_sample_step, "use_dynamic_cfg": options.use_dynamic_cfg,
                "latent_frame_indices": [int(index) for index in inputs.latent_indices],
                "memory_mode": self.memory_mode, "warnings": inputs.warnings,
            },
        )

    def resident_bytes(self) -> int:
        modules = [self.pipe.transformer, self.pipe.text_encoder, self.pipe.vae, self.pipe.transformer_ori]
        sizes = [sum(p.numel() * p.element_size() for p in m.parameters()) for m in modules if m is not None]
        if self.memory_mode == "resident":
            return sum(sizes)
        return max(sizes) if self.memory_mode == "model_offload" else 0

    def preview(self, shot: Shot, params: GenerateParams) -> np.ndarray:
        return preview(shot, self.prepare(shot, params))
