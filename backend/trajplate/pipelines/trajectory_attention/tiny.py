"""Tiny random Trajectory Attention weights in the real layouts (``root/base`` diffusers SVD folder,
``root/adapter/trajattn_temp.pth`` the authors' pickled tensor list)."""

from __future__ import annotations

import shutil
from pathlib import Path

import torch
from diffusers import (
    AutoencoderKLTemporalDecoder,
    EulerDiscreteScheduler,
    StableVideoDiffusionPipeline,
    UNetSpatioTemporalConditionModel,
)
from transformers import CLIPImageProcessor, CLIPVisionModelWithProjection

from ..tiny_parts import save_tiny_svd_components, tiny_svd_unet_config
from .convert import ADAPTER_FILE
from .unet import TrajectoryAttentionUNet


def tiny_vae() -> AutoencoderKLTemporalDecoder:
    """A temporal-decoder VAE with SVD's 8× spatial compression (4 blocks), so latents and the trajectory-count
    rule (≥ 2·h·w tracks at the finest latent map) are those of the real model."""
    return AutoencoderKLTemporalDecoder(
        block_out_channels=[32, 32, 32, 32], in_channels=3, out_channels=3, layers_per_block=1,
        down_block_types=["DownEncoderBlock2D"] * 4, latent_channels=4,
    ).eval()


def build(root: Path, *, seed: int = 0) -> None:
    """Write ``root/base`` (SVD layout incl. ``model_index.json``) and ``root/adapter`` (authors' list format)."""
    parts = root / "parts"
    save_tiny_svd_components(parts, seed=seed)
    torch.manual_seed(seed)
    config = tiny_svd_unet_config(num_frames=25)
    unet = UNetSpatioTemporalConditionModel(**config).eval()
    pipe = StableVideoDiffusionPipeline(
        vae=tiny_vae(),
        image_encoder=CLIPVisionModelWithProjection.from_pretrained(parts / "image_encoder"),
        unet=unet,
        scheduler=EulerDiscreteScheduler.from_pretrained(parts / "scheduler"),
        feature_extractor=CLIPImageProcessor.from_pretrained(parts / "feature_extractor"),
    )
    pipe.save_pretrained(root / "base")

    torch.manual_seed(seed + 1)
    branches = TrajectoryAttentionUNet(**config)
    tensors = [p.detach().clone() for name, p in branches.named_parameters() if "trajectory" in name]
    (root / "adapter").mkdir(parents=True, exist_ok=True)
    torch.save(tensors, root / "adapter" / ADAPTER_FILE)
    shutil.rmtree(parts)
