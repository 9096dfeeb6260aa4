"""``MagicMotionPipeline``: diffusers' ``CogVideoXImageToVideoPipeline`` plus the trajectory ControlNet.

Inference as the authors' ``pipeline_magicmotion.py`` (specs/pipelines.md §5.3): prompt → T5; first frame → VAE
latents (``latent_dist.sample(generator)``) ; initial noise; trajectory-map video → VAE latents (same generator, in that
order, so a seed reproduces their sampling); each step the ControlNet sees the scaled noisy latents ‖ trajectory
latents and the transformer adds its per-block residuals; CFG over (negative, positive); DPM (or DDIM) scheduler step.

Where we differ: the two branches run in lock-step (the ControlNet yields residual ``i`` right before transformer
block ``i`` needs it) instead of computing all 42 residuals first — same numbers, ≈9 GB less peak memory at native size
with CFG. ``controlnet`` is left out of ``model_cpu_offload_seq`` on purpose: in the chain, the transformer's call
would offload the ControlNet (and vice versa) on every step; outside it the ControlNet is moved to the GPU on its
first call and stays there until the end of the call, beside the transformer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import PIL.Image
import torch
from diffusers import CogVideoXImageToVideoPipeline
from diffusers.pipelines.cogvideo.pipeline_cogvideox_image2video import retrieve_latents, retrieve_timesteps

from ..cogvideox import guidance_at, guided_step
from .models import ControlNetWeights, MagicMotionTransformer3DModel, TrajectoryControlNet, block_weights


class MagicMotionPipeline(CogVideoXImageToVideoPipeline):
    """CogVideoX-5B-I2V with MagicMotion's trajectory ControlNet (components as the stock pipeline + ``controlnet``)."""

    model_cpu_offload_seq = "text_encoder->transformer->vae"

    def __init__(self, tokenizer, text_encoder, vae, transformer: MagicMotionTransformer3DModel, scheduler,
                 controlnet: TrajectoryControlNet):
        super().__init__(tokenizer=tokenizer, text_encoder=text_encoder, vae=vae, transformer=transformer,
                         scheduler=scheduler)
        self.register_modules(controlnet=controlnet)

    def prepare_trajectory_latents(
        self, trajectory_maps: torch.Tensor, dtype: torch.dtype, generator: torch.Generator | None
    ) -> torch.Tensor:
        """(B, 3, F, H, W) map video in [-1, 1] -> (B, F', C, H/8, W/8) scaled VAE latents (sampled, as the authors)."""
        latents = [retrieve_latents(self.vae.encode(video.unsqueeze(0)), generator) for video in trajectory_maps]
        latents = torch.cat(latents, dim=0).to(dtype).permute(0, 2, 1, 3, 4)
        if self.vae.config.invert_scale_latents:
            return latents / self.vae_scaling_factor_image
        return latents * self.vae_scaling_factor_image

    @torch.no_grad()
    def __call__(
        self,
        image: PIL.Image.Image,
        trajectory_maps: list[PIL.Image.Image],
        prompt: str,
        negative_prompt: str | None = None,
        height: int | None = None,
        width: int | None = None,
        num_frames: int | None = None,
        num_inference_steps: int = 50,
        guidance_scale: float = 6.0,
        use_dynamic_cfg: bool = False,
        generator: torch.Generator | None = None,
        controlnet_weights: ControlNetWeights = 1.0,
        output_type: str = "np",
        callback_on_step_end: Callable[[Any, int, torch.Tensor, dict], dict] | None = None,
        max_sequence_length: int | None = None,
    ) -> torch.Tensor | Any:
        """Generate one video.

        image: the first frame; trajectory_maps: ``num_frames`` RGB frames (both resized to ``height``×``width`` by
        the video processor, Lanczos, as the authors). Defaults: the transformer's native size (480×720, 49 frames).
        controlnet_weights: the ControlNet strength, a float or one per block. callback_on_step_end(pipe, i, t, {}) is
        called after every step; an exception from it stops sampling before decoding.
        Returns ``output_type`` frames of the one video: "np" -> (F, H, W, 3) float32 in [0, 1]; "latent" -> latents.
        Raises ValueError for a map with the wrong number of frames or per-block weights of the wrong length.
        """
        cfg = self.transformer.config
        height = height or cfg.sample_height * self.vae_scale_factor_spatial
        width = width or cfg.sample_width * self.vae_scale_factor_spatial
        num_frames = num_frames or cfg.sample_frames
        max_sequence_length = max_sequence_length or cfg.max_text_seq_length
        if len(trajectory_maps) != num_frames:
            raise ValueError(f"trajectory_maps: {len(trajectory_maps)} frames given, {num_frames} needed")
        weights = block_weights(controlnet_weights, len(self.controlnet.transformer_blocks))
        self.check_inputs(image, prompt, height, width, negative_prompt, None)
        self._guidance_scale = guidance_scale
        self._current_timestep = None
        self._attention_kwargs = None
        self._interrupt = False
        device = self._execution_device
        do_cfg = guidance_scale > 1.0

        prompt_embeds, negative_prompt_embeds = self.encode_prompt(
            prompt, negative_prompt, do_cfg, num_videos_per_prompt=1, max_sequence_length=max_sequence_length,
            device=device,
        )
        if do_cfg:
            prompt_embeds = torch.cat([negative_prompt_embeds, prompt_embeds], dim=0)
        dtype = prompt_embeds.dtype
        timesteps, num_inference_steps = retrieve_timesteps(self.scheduler, num_inference_steps, device)
        self._num_timesteps = len(timesteps)

        # Generator order = the authors': image latents, initial noise, then trajectory latents.
        image_pt = self.video_processor.preprocess(image, height=height, width=width).to(device, dtype=dtype)
        maps_pt = self.video_processor.preprocess_video(trajectory_maps, height=height, width=width).to(device, dtype)
        latents, image_latents = self.prepare_latents(
            image_pt, 1, cfg.in_channels // 2, num_frames, height, width, dtype, device, generator
        )
        trajectory_latents = self.prepare_trajectory_latents(maps_pt, dtype, generator)
        if do_cfg:
            image_latents = torch.cat([image_latents] * 2)
            trajectory_latents = torch.cat([trajectory_latents] * 2)
        extra_step_kwargs = self.prepare_extra_step_kwargs(generator, 0.0)
        rotary = (
            self._prepare_rotary_positional_embeddings(height, width, latents.size(1), device)
            if cfg.use_rotary_positional_embeddings else None
        )
        ofs = None if cfg.ofs_embed_dim is None else latents.new_full((1,), fill_value=2.0)

        old_pred_original_sample = None
        for i, t in enumerate(self.progress_bar(timesteps)):
            self._current_timestep = t
            latent_in = torch.cat([latents] * 2) if do_cfg else latents
            latent_in = self.scheduler.scale_model_input(latent_in, t)
            timestep = t.expand(latent_in.shape[0])
            residuals = self.controlnet(
                hidden_states=latent_in, trajectory_hidden_states=trajectory_latents,
                encoder_hidden_states=prompt_embeds, timestep=timestep, image_rotary_emb=rotary, lazy=True,
            )
            with self.transformer.cache_context("cond_uncond"):
                noise_pred = self.transformer(
                    hidden_states=torch.cat([latent_in, image_latents], dim=2), encoder_hidden_states=prompt_embeds,
                    timestep=timestep, ofs=ofs, image_rotary_emb=rotary, controlnet_states=residuals,
                    controlnet_weights=weights, return_dict=False,
                )[0].float()
            self._guidance_scale = guidance_at(guidance_scale, t, num_inference_steps, use_dynamic_cfg)
            latents, old_pred_original_sample = guided_step(
                self.scheduler, noise_pred, latents, old_pred_original_sample, timesteps, i,
                guidance=self._guidance_scale, do_cfg=do_cfg, extra_step_kwargs=extra_step_kwargs,
            )
            latents = latents.to(dtype)
            if callback_on_step_end is not None:
                callback_on_step_end(self, i, t, {})

        self._current_timestep = None
        if output_type == "latent":
            video = latents
        else:
            video = self.video_processor.postprocess_video(self.decode_latents(latents), output_type=output_type)[0]
        self.maybe_free_model_hooks()
        return video
