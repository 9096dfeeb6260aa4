"""Weights: SVD-XT's diffusers folder + the authors' adapter → a :class:`TrajectoryAttentionSVDPipeline`.

The UNet loads through diffusers' ``from_pretrained`` (SVD-XT's own ``unet/`` folder, fp16 variant when present);
the branch parameters are the only keys the base checkpoint may lack, and the adapter must fill exactly those. Any
other missing or unexpected key is an error naming it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from diffusers.utils import logging as diffusers_logging

from .convert import AdapterFormatError, branch_parameter_names, read_adapter
from .pipeline import TrajectoryAttentionSVDPipeline
from .unet import TrajectoryAttentionUNet

FP16_UNET = "unet/diffusion_pytorch_model.fp16.safetensors"


@contextmanager
def _quiet_diffusers() -> Iterator[None]:
    """diffusers warns that the branch is "newly initialized"; we check the missing keys ourselves."""
    level = diffusers_logging.get_verbosity()
    diffusers_logging.set_verbosity_error()
    try:
        yield
    finally:
        diffusers_logging.set_verbosity(level)


def weight_variant(base_dir: Path) -> str | None:
    """``"fp16"`` when the base folder holds SVD-XT's fp16 files (what the preset downloads), else None."""
    return "fp16" if (Path(base_dir) / FP16_UNET).is_file() else None


def load_unet(base_dir: Path, adapter_dir: Path, dtype: torch.dtype) -> TrajectoryAttentionUNet:
    """SVD-XT's UNet with the authors' branch weights, on the CPU in ``dtype``.

    Raises :class:`AdapterFormatError` when the base lacks other keys than the branch, has unexpected ones, or the
    adapter does not fill every branch parameter; FileNotFoundError when the adapter file is missing.
    """
    with _quiet_diffusers():
        unet, info = TrajectoryAttentionUNet.from_pretrained(
            base_dir, subfolder="unet", dtype=dtype, variant=weight_variant(base_dir), output_loading_info=True
        )
    branch = branch_parameter_names(dict(unet.config))
    missing, unexpected = set(info["missing_keys"]) - set(branch), info["unexpected_keys"]
    if missing or unexpected:
        raise AdapterFormatError(f"{base_dir}/unet: not an SVD UNet checkpoint: missing {sorted(missing)[:3]}, "
                                 f"unexpected {sorted(unexpected)[:3]}")
    shapes = {name: param.shape for name, param in unet.named_parameters()}
    state = read_adapter(adapter_dir, dict(unet.config), shapes)
    result = unet.load_state_dict({k: v.to(dtype) for k, v in state.items()}, strict=False, assign=True)
    left = sorted(set(result.missing_keys) & set(branch))
    if left or result.unexpected_keys:
        raise AdapterFormatError(f"adapter: branch parameters not filled {left[:3]}, unexpected "
                                 f"{result.unexpected_keys[:3]}")
    return unet.eval()


def load_pipeline(base_dir: Path, adapter_dir: Path, dtype: torch.dtype) -> TrajectoryAttentionSVDPipeline:
    """The whole pipeline on the CPU in ``dtype`` (place it with a memory mode afterwards)."""
    unet = load_unet(base_dir, adapter_dir, dtype)
    pipe = TrajectoryAttentionSVDPipeline.from_pretrained(base_dir, unet=unet, dtype=dtype,
                                                          variant=weight_variant(base_dir))
    pipe.set_progress_bar_config(disable=True)
    return pipe
