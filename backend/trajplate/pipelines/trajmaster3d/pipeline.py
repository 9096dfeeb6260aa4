"""The 3DTrajMaster sampling loop on diffusers' ``CogVideoXPipeline`` (specs/pipelines.md §1.3.2–3, §1.5).

Annealed sampling, as the authors run it: denoising step ``i`` (0-based) uses the object injector and the domain LoRA
while ``i <= annealed_sample_step``, and plain CogVideoX-5B afterwards. The authors keep two transformers for this
(one with the LoRA fused, one deep copy without); here one transformer holds the LoRA as a PEFT adapter that is
switched off, and the poses dropped, for the late steps. That is what the pipeline does by default; the authors'
two-copy scheme stays available (``transformer_ori``, set by the loader) for the parity measurement and the benchmark.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from diffusers import CogVideoXDPMScheduler, CogVideoXPipeline
from diffusers.pipelines.cogvideo.pipeline_cogvideox import CogVideoXPipelineOutput, retrieve_timesteps

from ..cogvideox import guidance_at, guided_step
from .transformer import MAX_ENTITIES, POSE_DIM, TrajMasterTransformer3DModel

LORA_ADAPTER = "default"  # the adapter name the authors load their LoRA under
TEXT_TOKENS = 226  # every prompt (full, negative, entity, empty) is T5-encoded padded to 226 tokens

StepCallback = Callable[["TrajMaster3DPipeline", int, torch.Tensor, dict[str, torch.Tensor]], dict[str, Any] | None]


class TrajMaster3DPipeline(CogVideoXPipeline):
    """CogVideoX-5B text-to-video whose entities follow 6-DoF paths, each bound to its own prompt.

    Components are the stock ones; ``transformer`` is a :class:`TrajMasterTransformer3DModel`. The video is always
    generated at the transformer's native size (``sample_height/width × 8``, ``sample_frames``: 480×720×49 for the
    real weights), the only size the injector works at.
    """

    transformer: TrajMasterTransformer3DModel
    transformer_ori: TrajMasterTransformer3DModel | None = None  # authors' two-copy annealing only

    @property
    def native_size(self) -> tuple[int, int, int]:
        """(frames, height, width) in pixels of the videos this pipeline makes."""
        config = self.transformer.config
        return (
            config.sample_frames,
            config.sample_height * self.vae_scale_factor_spatial,
            config.sample_width * self.vae_scale_factor_spatial,
        )

    @property
    def latent_frames(self) -> int:
        return self.transformer.injector_latent_frames

    def entity_token_counts(self, entity_prompts: list[str]) -> list[int]:
        """T5 tokens of each entity prompt, end-of-sequence token included (the injector keeps the first 50)."""
        return [len(ids) for ids in self.tokenizer(entity_prompts, add_special_tokens=True).input_ids]

    def encode_entities(self, entity_prompts: list[str], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """T5 states and tokenizer masks of each entity prompt, encoded one at a time as the authors do.

        Returns (1, n, 226, C) text-encoder dtype and (1, n, 226) int64 (1 = token, 0 = padding).
        """
        states, masks = [], []
        for text in entity_prompts:
            tokens = self.tokenizer(
                text, padding="max_length", max_length=TEXT_TOKENS, truncation=True, add_special_tokens=True,
                return_tensors="pt",
            )
            states.append(self.text_encoder(tokens.input_ids.to(device))[0])
            masks.append(tokens.attention_mask.to(device))
        return torch.stack(states, dim=1), torch.stack(masks, dim=1)

    def configure_scheduler(self) -> None:
        """The authors' sampler: ``CogVideoXDPMScheduler`` from the base config with trailing timestep spacing."""
        self.scheduler = CogVideoXDPMScheduler.from_config(self.scheduler.config, timestep_spacing="trailing")

    def _has_lora(self) -> bool:
        return LORA_ADAPTER in (getattr(self.transformer, "peft_config", None) or {})

    def _set_control(self, controlled: bool, lora_scale: float) -> None:
        """Switch the PEFT LoRA on (at ``lora_scale``) for controlled steps and off for plain ones."""
        if not self._has_lora():
            return
        if controlled:
            self.transformer.enable_adapters()
            self.transformer.set_adapters([LORA_ADAPTER], [lora_scale])
        else:
            self.transformer.disable_adapters()

    @torch.no_grad()
    def __call__(
        self,
        prompt: str,
        entity_prompts: list[str],
        pose_embeds: torch.Tensor,
        *,
        negative_prompt: str = "",
        num_inference_steps: int = 50,
        guidance_scale: float = 6.0,
        use_dynamic_cfg: bool = True,
        annealed_sample_step: int = 20,
        lora_scale: float = 0.6,
        generator: torch.Generator | None = None,
        output_type: str = "np",
        callback_on_step_end: StepCallback | None = None,
    ) -> CogVideoXPipelineOutput:
        """Generate one video.

        prompt: the composed scene prompt (``"<e1> and <e2> are moving in the <location>"``).
        entity_prompts: one caption per entity, n = 1..3, in the order of ``pose_embeds``.
        pose_embeds: (1, n, latent_frames, 12) poses in 3DTrajMaster's camera frame (x right, y up, z forward,
            metres; ``[R|t]`` column-major), one per latent frame.
        annealed_sample_step: steps ``0..annealed_sample_step`` use the injector and the LoRA at ``lora_scale``,
            later steps plain CogVideoX-5B (−1: no controlled step).
        callback_on_step_end: ``callback(pipe, i, t, {"latents": latents})`` after every step; may return
            ``{"latents": ...}``; an exception raised there stops the loop before decoding.

        Returns ``frames`` (1, F, H, W, 3) float32 in [0, 1] for ``output_type="np"``. Raises ValueError naming the
        argument on a bad shape or entity count.
        """
        frames, height, width = self.native_size
        entities = len(entity_prompts)
        if not 1 <= entities <= MAX_ENTITIES:
            raise ValueError(f"entity_prompts: {entities} given; 3DTrajMaster takes 1 to {MAX_ENTITIES} entities")
        expected = (1, entities, self.latent_frames, POSE_DIM)
        if tuple(pose_embeds.shape) != expected:
            raise ValueError(f"pose_embeds: shape {tuple(pose_embeds.shape)}, expected {expected}")

        device = self._execution_device
        dtype = self.transformer.dtype
        do_cfg = guidance_scale > 1.0
        prompt_embeds, negative_embeds = self.encode_prompt(
            prompt, negative_prompt, do_cfg, max_sequence_length=TEXT_TOKENS, device=device
        )
        if do_cfg:
            prompt_embeds = torch.cat([negative_embeds, prompt_embeds], dim=0)
        entity_embeds, entity_mask = self.encode_entities(entity_prompts, device)
        empty_embeds = self._get_t5_prompt_embeds("", max_sequence_length=TEXT_TOKENS, device=device)
        pose_embeds = pose_embeds.to(device=device, dtype=dtype)
        injector = dict(
            pose_embeds=pose_embeds, entity_embeds=entity_embeds, entity_attention_mask=entity_mask,
            empty_text_embeds=empty_embeds,
        )

        timesteps, num_inference_steps = retrieve_timesteps(self.scheduler, num_inference_steps, device)
        self._num_timesteps = len(timesteps)
        latents = self.prepare_latents(
            1, self.transformer.config.in_channels, frames, height, width, prompt_embeds.dtype, device, generator
        )
        extra_step_kwargs = self.prepare_extra_step_kwargs(generator, 0.0)
        rotary = self._prepare_rotary_positional_embeddings(height, width, latents.size(1), device)

        old_pred_original_sample = None
        try:
            for i, t in enumerate(timesteps):
                controlled = i <= annealed_sample_step
                if i == 0 or i == annealed_sample_step + 1:
                    self._set_control(controlled, lora_scale)
                model_input = torch.cat([latents] * 2) if do_cfg else latents
                model_input = self.scheduler.scale_model_input(model_input, t)
                timestep = t.expand(model_input.shape[0])
                common = dict(
                    hidden_states=model_input, encoder_hidden_states=prompt_embeds, timestep=timestep,
                    image_rotary_emb=rotary, return_dict=False,
                )
                if controlled:
                    noise_pred = self.transformer(**common, **injector)[0]
                else:
                    plain = self.transformer_ori if self.transformer_ori is not None else self.transformer
                    noise_pred = plain(**common)[0]
                noise_pred = noise_pred.float()

                self._guidance_scale = guidance_at(guidance_scale, t, num_inference_steps, use_dynamic_cfg)
                latents, old_pred_original_sample = guided_step(
                    self.scheduler, noise_pred, latents, old_pred_original_sample, timesteps, i,
                    guidance=self._guidance_scale, do_cfg=do_cfg, extra_step_kwargs=extra_step_kwargs,
                )
                latents = latents.to(prompt_embeds.dtype)

                if callback_on_step_end is not None:
                    returned = callback_on_step_end(self, i, t, {"latents": latents}) or {}
                    latents = returned.get("latents", latents)
        finally:
            # The next job starts from the loaded state whatever happened here (cancel included).
            self._set_control(True, lora_scale)

        if output_type == "latent":
            video = latents
        else:
            video = self.video_processor.postprocess_video(video=self.decode_latents(latents), output_type=output_type)
        self.maybe_free_model_hooks()
        return CogVideoXPipelineOutput(frames=video)
