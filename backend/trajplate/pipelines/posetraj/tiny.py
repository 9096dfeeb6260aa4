"""Tiny random PoseTraj weights in the real layouts: ``root/base`` (diffusers SVD folder with ``model_index.json``)
and ``root/adapter`` (a Traj-ControlNet folder as the authors' training writes it; ``root/adapter-camera`` the camera
variant)."""

from __future__ import annotations

import shutil
from pathlib import Path

import torch
from diffusers import EulerDiscreteScheduler, StableVideoDiffusionPipeline, UNetSpatioTemporalConditionModel
from transformers import CLIPImageProcessor, CLIPVisionModelWithProjection

from ..tiny_parts import save_tiny_svd_components, tiny_svd_unet_config
from ..trajectory_attention.tiny import tiny_vae
from .models import CAMERA_DIM, ControlNetSDVModel

TINY_EMBEDDING_CHANNELS = (8, 8, 8, 8)
"""Four levels like the authors' (16, 32, 96, 256): the same ÷8 as SVD's VAE, at a tiny width."""


def tiny_unet(seed: int = 0, cls=UNetSpatioTemporalConditionModel):
    """A tiny SVD UNet (14 frames) of ``cls``; the base folder is saved from the stock class, as SVD's is."""
    torch.manual_seed(seed)
    return cls(**tiny_svd_unet_config(num_frames=14)).eval()


def tiny_controlnet(unet, *, camera: bool = False, seed: int = 1) -> ControlNetSDVModel:
    """A ControlNet copied from ``unet`` whose zero-initialised parts are randomised, so it does change the output."""
    controlnet = ControlNetSDVModel.from_unet(unet, camera_dim=CAMERA_DIM if camera else 0,
                                              conditioning_embedding_out_channels=TINY_EMBEDDING_CHANNELS)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in (*controlnet.controlnet_down_blocks, controlnet.controlnet_mid_block,
                       controlnet.controlnet_cond_embedding.conv_out):
            for p in module.parameters():
                p.copy_(torch.randn(p.shape, generator=generator) * 0.05)
    return controlnet.eval()


def build(root: Path, *, seed: int = 0) -> None:
    """Write ``root/base``, ``root/adapter`` and ``root/adapter-camera``."""
    parts = root / "parts"
    save_tiny_svd_components(parts, seed=seed)
    unet = tiny_unet(seed)
    StableVideoDiffusionPipeline(
        vae=tiny_vae(),
        image_encoder=CLIPVisionModelWithProjection.from_pretrained(parts / "image_encoder"),
        unet=unet,
        scheduler=EulerDiscreteScheduler.from_pretrained(parts / "scheduler"),
        feature_extractor=CLIPImageProcessor.from_pretrained(parts / "feature_extractor"),
    ).save_pretrained(root / "base")
    tiny_controlnet(unet, seed=seed + 1).save_pretrained(root / "adapter")
    tiny_controlnet(unet, camera=True, seed=seed + 2).save_pretrained(root / "adapter-camera")
    shutil.rmtree(parts)
