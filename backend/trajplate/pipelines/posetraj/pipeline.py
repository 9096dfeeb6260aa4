"""``StableVideoDiffusionPipelineControlNet``: SVD img2vid driven by the Traj-ControlNet (specs/pipelines.md §3.1, §3.3).

Stock diffusers 0.42 SVD sampling (CLIP image embedding, VAE posterior mode for the image latents, zero negative
image latents, per-frame linear CFG, Euler Karras v-prediction, chunked temporal decode) with the UNet's skips fed by
the ControlNet on every call; both CFG halves see the maps and the camera, as in the authors' pipeline.

Reproduced quirk: the authors' pipeline ignores the caller's fps / motion bucket / noise augmentation and always
uses the training values **fps 6, motion bucket 128, noise aug 0.02**; ``__call__`` does the same (diffusers' SVD
pipeline conditions on ``fps − 1``, so it is given 7).
"""

from __future__ import annotations

import torch
from diffusers import StableVideoDiffusionPipeline

from .models import ControlNetSDVModel, UNetSpatioTemporalConditionControlNetModel

ADDED_TIME_FPS = 6
MOTION_BUCKET_ID = 128
NOISE_AUG_STRENGTH = 0.02


class StableVideoDiffusionPipelineControlNet(StableVideoDiffusionPipeline):
    """SVD + Traj-ControlNet. The ControlNet runs inside each UNet call (see ``UNet…ControlNetModel.controlled``);
    with model offload it is on the device only while it runs, which moves it once per step."""

    model_cpu_offload_seq = "image_encoder->controlnet->unet->vae"
    unet: UNetSpatioTemporalConditionControlNetModel
    controlnet: ControlNetSDVModel

    def __init__(self, vae, image_encoder, unet: UNetSpatioTemporalConditionControlNetModel, scheduler,
                 feature_extractor, controlnet: ControlNetSDVModel):
        super().__init__(vae=vae, image_encoder=image_encoder, unet=unet, scheduler=scheduler,
                         feature_extractor=feature_extractor)
        self.register_modules(controlnet=controlnet)

    def __call__(self, image, controlnet_condition: torch.Tensor, *, camera: torch.Tensor | None = None,
                 controlnet_cond_scale: float = 1.0, max_guidance_scale: float = 3.0, **kwargs):
        """As ``StableVideoDiffusionPipeline.__call__`` (fps, motion bucket and noise aug are fixed, see module).

        controlnet_condition: (F, 3, H, W) maps in [−1, 1] at the output size; camera: (F, 12) or None.
        Raises ValueError when fps / motion_bucket_id / noise_aug_strength are passed (they would be ignored).
        """
        fixed = {"fps", "motion_bucket_id", "noise_aug_strength"} & kwargs.keys()
        if fixed:
            raise ValueError(f"{', '.join(sorted(fixed))}: fixed to the training values by PoseTraj; do not pass")
        batch = 2 if max_guidance_scale > 1.0 else 1  # the stock pipeline's CFG batch (one video per image)
        device, dtype = self._execution_device, self.unet.dtype
        cond = controlnet_condition[None].expand(batch, *controlnet_condition.shape).to(device, dtype)
        cam = None if camera is None else camera[None].expand(batch, *camera.shape).to(device, dtype)
        with self.unet.controlled(self.controlnet, cond, cam, controlnet_cond_scale):
            return super().__call__(image, max_guidance_scale=max_guidance_scale, fps=ADDED_TIME_FPS + 1,
                                    motion_bucket_id=MOTION_BUCKET_ID, noise_aug_strength=NOISE_AUG_STRENGTH,
                                    **kwargs)
