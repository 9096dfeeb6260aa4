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
import logging
from pathlib import Path

import numpy as np
import torch
from diffusers import CogVideoXPipeline
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ...conditioning.trajmaster3d import MAX_ENTITY_TOKENS, TrajMasterInputs, condition, preview
from ...jobs.runner import effective_settings
from ...params import MEMORY_MODES, GenerateParams, MemoryMode
from ...presets import Preset
from ...shot import Shot
from ..base import GeneratedVideo, PipelineInputError, ProgressFn, TrajPipeline
from .loading import load_pipeline, save_tiny_weights
from .pipeline import TrajMaster3DPipeline

logger = logging.getLogger(__name__)


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


def apply_memory_mode(pipe: CogVideoXPipeline, mode: str, device: torch.device) -> None:
    """Place ``pipe`` on ``device`` in one of DESIGN's memory modes (diffusers' offload calls).

    On a CPU device there is nothing to offload to, so every mode runs resident (logged). Offloading modes also turn
    on VAE tiling and slicing, as the authors do. Raises PipelineInputError for an unknown mode.
    """
    if mode not in MEMORY_MODES:
        raise PipelineInputError(f"memory_mode: {mode!r} is not one of {', '.join(MEMORY_MODES)}")
    if device.type == "cpu" or mode == "resident":
        if mode != "resident":
            logger.warning("memory_mode %s needs an accelerator; running resident on the CPU", mode)
        pipe.to(device)
        plain_copy = getattr(pipe, "transformer_ori", None)  # the authors' two-copy annealing (bench, parity)
        if plain_copy is not None:
            plain_copy.to(device)
        return
    if mode == "model_offload":
        pipe.enable_model_cpu_offload(device=device)
    elif mode == "group_offload":
        pipe.enable_group_offload(
            onload_device=device, offload_device=torch.device("cpu"), offload_type="block_level",
            num_blocks_per_group=1, use_stream=True,
        )
    else:
        pipe.enable_sequential_cpu_offload(device=device)
    pipe.vae.enable_tiling()
    pipe.vae.enable_slicing()


class TrajMaster3D(TrajPipeline):
    """3DTrajMaster (ICLR 2025): up to three entities, each with a prompt and a 6-DoF path, on CogVideoX-5B."""

    id = "3dtrajmaster"
    Options = TrajMaster3DOptions

    def __init__(self, pipe: TrajMaster3DPipeline, preset: Preset, memory_mode: str):
        self.pipe, self.preset, self.memory_mode = pipe, preset, memory_mode

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
        device = torch.device(device)
        dtype = dtype or (torch.bfloat16 if device.type == "cuda" else torch.float32)
        pipe = load_pipeline(Path(base_dir), Path(adapter_dir), dtype=dtype)
        apply_memory_mode(pipe, memory_mode, device)
        return cls(pipe, preset, memory_mode)

    @classmethod
    def build_tiny(cls, root: Path) -> None:
        save_tiny_weights(Path(root))

    def _options(self, params: GenerateParams) -> TrajMaster3DOptions:
        try:
            return self.Options.model_validate(params.options)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"])
            raise PipelineInputError(f"options.{where}: {first['msg']}") from exc

    def prepare(self, shot: Shot, params: GenerateParams) -> TrajMasterInputs:
        """Poses at the latent frames, entity prompts and the composed prompt (``params.prompt`` replaces it)."""
        options = self._options(params)
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
        options = self._options(params)
        settings = effective_settings(params, self.preset, inputs.prompt)
        steps = settings["steps"]
        generator = torch.Generator().manual_seed(params.seed)  # a CPU generator, as the authors seed theirs

        def on_step(pipe, index, timestep, tensors):
            progress("denoising", index + 1, steps)

        progress("denoising", 0, steps)
        latents = self.pipe(
            inputs.prompt, inputs.entity_prompts, torch.from_numpy(inputs.pose_embeds)[None],
            negative_prompt=settings["negative_prompt"], num_inference_steps=steps,
            guidance_scale=settings["guidance"], use_dynamic_cfg=options.use_dynamic_cfg,
            annealed_sample_step=options.annealed_sample_step, lora_scale=options.lora_scale, generator=generator,
            output_type="latent", callback_on_step_end=on_step,
        ).frames
        progress("decoding", 0, 1)
        with torch.no_grad():
            video = self.pipe.video_processor.postprocess_video(self.pipe.decode_latents(latents), output_type="np")
        frames = np.clip(np.round(video[0] * 255.0), 0, 255).astype(np.uint8)
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
