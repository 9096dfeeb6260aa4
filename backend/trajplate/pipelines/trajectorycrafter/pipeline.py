"""``TrajectoryCrafterPipeline``: CogVideoX-Fun inpainting + Ref-DiT reference tokens (specs/pipelines.md §4.3).

Inference as the authors' ``TrajCrafter_Pipeline`` (diffusers has no CogVideoX-Fun InP pipeline):

* prompt → T5 (CogVideoX's ``encode_prompt``), CFG over (negative, positive);
* **mask latent**: holes binarised (1 = hole); ``resize_mask(1 − mask)`` = trilinear resize of frame 0 to one latent
  frame and of frames 1.. to the remaining latent frames, × the VAE scaling factor;
* **masked-video latents**: the render in [−1, 1] with holes set to −1 (plus σ = ``noise_aug_strength`` noise on
  non-hole pixels when the transformer config says ``add_noise_in_inpaint_model``), VAE ``mode()`` × scaling factor;
  an all-hole mask gives zero mask and masked-video latents, as the authors;
* **reference**: the source clip in [−1, 1], VAE-encoded (posterior sample) × scaling factor → Ref-DiT tokens;
* 3D RoPE over the latent grid, crop region relative to the authors' fixed 720×480 base grid;
* DDIM (or any diffusers scheduler) with ``eta`` 0, optional dynamic CFG; decode with the VAE.

VAE chunking: diffusers' ``AutoencoderKLCogVideoX`` encodes 8 frames per causal chunk (remainder folded into the
first), the CogVideoX-Fun copy the authors ship encodes 4 (so the 10-frame reference is 6 + 4 frames, the 49-frame
render 5 + 11 × 4). GroupNorm statistics are per chunk, so the two give different latents; the pipeline sets
``vae.num_sample_frames_batch_size = 4`` to encode exactly as the authors (decoding, 2 latent frames per chunk, is the
same in both). See tests/pipelines/test_trajectorycrafter_models.py for the measured difference.

Where we knowingly differ: the authors draw the reference posterior sample and the noise augmentation from the global
RNG; here every random draw comes from the job's seeded generator, in this order: initial noise (the same draw as the
authors' for the same seed and device), reference latents, noise augmentation.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from diffusers import CogVideoXPipeline
from diffusers.models.embeddings import get_3d_rotary_pos_embed
from diffusers.pipelines.cogvideo.pipeline_cogvideox import get_resize_crop_region_for_grid
from diffusers.utils.torch_utils import randn_tensor

from ..cogvideox import guidance_at, guided_step

AUTHORS_SAMPLE_FRAMES_PER_CHUNK = 4  # CogVideoX-Fun's VAE (models/autoencoder_magvit.py)
AUTHORS_BASE_SIZE = (720, 480)  # their RoPE crop region is relative to this grid whatever the transformer config says
NOISE_AUG_STRENGTH = 0.0563


def resize_mask(mask: torch.Tensor, latent_frames: int, size: tuple[int, int]) -> torch.Tensor:
    """(B, 1, F, H, W) -> (B, 1, latent_frames, h, w): frame 0 alone to one latent frame, the rest to the others
    (trilinear, ``align_corners=False``), the authors' ``resize_mask`` with ``process_first_frame_only``."""
    first = F.interpolate(mask[:, :, :1], size=(1, *size), mode="trilinear", align_corners=False)
    if latent_frames == 1:
        return first
    rest = F.interpolate(mask[:, :, 1:], size=(latent_frames - 1, *size), mode="trilinear", align_corners=False)
    return torch.cat([first, rest], dim=2)


class TrajectoryCrafterPipeline(CogVideoXPipeline):
    """Components as CogVideoX (tokenizer, text_encoder, vae, transformer, scheduler); the transformer is a
    :class:`~.transformer.TrajectoryCrafterTransformer3DModel`."""

    def __init__(self, tokenizer, text_encoder, vae, transformer, scheduler):
        super().__init__(tokenizer=tokenizer, text_encoder=text_encoder, vae=vae, transformer=transformer,
                         scheduler=scheduler)
        if vae is not None:
            vae.num_sample_frames_batch_size = AUTHORS_SAMPLE_FRAMES_PER_CHUNK

    def _rope(self, height: int, width: int, latent_frames: int, device: torch.device):
        step = self.vae_scale_factor_spatial * self.transformer.config.patch_size
        grid = (height // step, width // step)
        crops = get_resize_crop_region_for_grid(grid, AUTHORS_BASE_SIZE[0] // step, AUTHORS_BASE_SIZE[1] // step)
        return get_3d_rotary_pos_embed(
            embed_dim=self.transformer.config.attention_head_dim, crops_coords=crops, grid_size=grid,
            temporal_size=latent_frames, use_real=True, device=device,
        )

    def _encode(self, video: torch.Tensor, generator: torch.Generator | None, sample: bool) -> torch.Tensor:
        """(1, 3, F, H, W) in [-1, 1] -> (1, C, f, h, w) scaled latents (posterior sample or mode)."""
        dist = self.vae.encode(video.to(self.vae.dtype)).latent_dist
        return (dist.sample(generator) if sample else dist.mode()) * self.vae.config.scaling_factor

    @torch.no_grad()
    def __call__(
        self,
        render: torch.Tensor,
        holes: torch.Tensor,
        reference: torch.Tensor,
        prompt: str,
        negative_prompt: str = "",
        num_inference_steps: int = 50,
        guidance_scale: float = 6.0,
        use_dynamic_cfg: bool = False,
        generator: torch.Generator | None = None,
        noise_aug_strength: float = NOISE_AUG_STRENGTH,
        callback_on_step_end: Callable[[Any, int, torch.Tensor, dict], dict] | None = None,
        output_type: str = "np",
    ) -> Any:
        """Generate one video.

        render: (F, H, W, 3) float in [0, 1], the point-cloud render; holes: (F, H, W) bool, True where nothing was
        rendered; reference: (R, H, W, 3) float in [0, 1], source frames. H, W must be multiples of 16 (8× VAE, patch
        2); F = 4k + 1. ``callback_on_step_end(pipe, i, t, {})`` runs after every step; an exception from it stops
        sampling before decoding. Returns "np": (F, H, W, 3) float32 in [0, 1]; "latent": (1, f, C, h, w) latents.
        Raises ValueError for inconsistent shapes.
        """
        frames, height, width, _ = render.shape
        if holes.shape != render.shape[:3] or reference.shape[1:] != render.shape[1:]:
            raise ValueError(f"holes {tuple(holes.shape)} and reference {tuple(reference.shape)} must match the "
                             f"render {tuple(render.shape)} in frames (holes) and size")
        if (frames - 1) % self.vae_scale_factor_temporal or height % 16 or width % 16:
            raise ValueError(f"render: {frames} frames of {width}×{height}; need 4k+1 frames, sides multiple of 16")
        device = self._execution_device
        do_cfg = guidance_scale > 1.0
        self._guidance_scale = guidance_scale
        self._current_timestep = None
        self._interrupt = False

        prompt_embeds, negative_embeds = self.encode_prompt(
            prompt, negative_prompt, do_cfg, num_videos_per_prompt=1,
            max_sequence_length=self.transformer.config.max_text_seq_length, device=device,
        )
        if do_cfg:
            prompt_embeds = torch.cat([negative_embeds, prompt_embeds], dim=0)
        dtype = self.transformer.dtype
        prompt_embeds = prompt_embeds.to(dtype)
        self.scheduler.set_timesteps(num_inference_steps, device=device)
        timesteps = self.scheduler.timesteps
        self._num_timesteps = len(timesteps)

        latent_frames = (frames - 1) // self.vae_scale_factor_temporal + 1
        size = (height // self.vae_scale_factor_spatial, width // self.vae_scale_factor_spatial)
        channels = self.vae.config.latent_channels
        latents = randn_tensor((1, latent_frames, channels, *size), generator=generator, device=device, dtype=dtype)
        latents = latents * self.scheduler.init_noise_sigma

        to_video = lambda x: (x.to(device, torch.float32).permute(3, 0, 1, 2)[None] * 2.0 - 1.0)  # noqa: E731
        ref_latents = self._encode(to_video(reference), generator, sample=True).permute(0, 2, 1, 3, 4).to(dtype)

        mask = holes.to(device, torch.float32)[None, None]  # (1, 1, F, H, W), 1 = hole
        if bool(mask.min() == 1):
            inpaint = torch.zeros(1, latent_frames, channels + 1, *size, device=device, dtype=dtype)
        else:
            masked = torch.where(mask > 0.5, -1.0, to_video(render))
            if self.transformer.config.add_noise_in_inpaint_model:
                noise = randn_tensor(masked.shape, generator=generator, device=device, dtype=masked.dtype)
                masked = torch.where(masked == -1, masked, masked + noise_aug_strength * noise)
            masked_latents = self._encode(masked, generator, sample=False)
            mask_latents = resize_mask(1.0 - mask, latent_frames, size) * self.vae.config.scaling_factor
            inpaint = torch.cat([mask_latents.to(masked_latents), masked_latents], dim=1)
            inpaint = inpaint.permute(0, 2, 1, 3, 4).to(dtype)
        if do_cfg:
            inpaint, ref_latents = torch.cat([inpaint] * 2), torch.cat([ref_latents] * 2)

        rope = self._rope(height, width, latent_frames, device) if self.transformer.config.use_rotary_positional_embeddings else None
        extra = self.prepare_extra_step_kwargs(generator, 0.0)
        old_pred = None
        for i, t in enumerate(timesteps):
            self._current_timestep = t
            latent_in = torch.cat([latents] * 2) if do_cfg else latents
            latent_in = self.scheduler.scale_model_input(latent_in, t)
            noise_pred = self.transformer(
                hidden_states=latent_in, encoder_hidden_states=prompt_embeds, timestep=t.expand(latent_in.shape[0]),
                inpaint_latents=inpaint, cross_latents=ref_latents, image_rotary_emb=rope, return_dict=False,
            )[0].float()
            self._guidance_scale = guidance_at(guidance_scale, t, num_inference_steps, use_dynamic_cfg)
            latents, old_pred = guided_step(self.scheduler, noise_pred, latents, old_pred, timesteps, i,
                                            guidance=self._guidance_scale, do_cfg=do_cfg, extra_step_kwargs=extra)
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
