"""Weights: SVD's diffusers folder + a Traj-ControlNet folder → :class:`StableVideoDiffusionPipelineControlNet`.

The ControlNet folder is what the authors' training (and ``trajplate posetraj-train``) writes: diffusers
``save_pretrained`` output (``config.json`` + ``diffusion_pytorch_model.safetensors``, or ``.bin`` from older
accelerate), either given directly or as the ``controlnet/`` subfolder of a ``checkpoint-<step>`` folder. The
camera variant is recognised by its ``controlnet_cond_embedding.cc_projection`` weights (the authors' config does not
say). Loading is strict: any missing or unexpected key, in the UNet or the ControlNet, is an error naming it.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors import safe_open

from .models import CAMERA_DIM, ControlNetSDVModel, UNetSpatioTemporalConditionControlNetModel
from .pipeline import StableVideoDiffusionPipelineControlNet

FP16_UNET = "unet/diffusion_pytorch_model.fp16.safetensors"
WEIGHT_FILES = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")
CAMERA_KEY = "controlnet_cond_embedding.cc_projection.weight"


class ControlNetFormatError(ValueError):
    """The ControlNet (or base UNet) folder does not hold the expected weights; the message names the key/file."""


def weight_variant(base_dir: Path) -> str | None:
    """``"fp16"`` when the base folder holds SVD's fp16 files (what the preset downloads), else None."""
    return "fp16" if (Path(base_dir) / FP16_UNET).is_file() else None


def controlnet_folder(adapter_dir: Path) -> Path:
    """The folder holding the ControlNet's ``config.json``: ``adapter_dir`` or its ``controlnet/`` subfolder.

    Raises FileNotFoundError naming both places when neither has one."""
    adapter_dir = Path(adapter_dir)
    for folder in (adapter_dir, adapter_dir / "controlnet"):
        if (folder / "config.json").is_file():
            return folder
    raise FileNotFoundError(f"{adapter_dir}: no ControlNet config.json here or in controlnet/; give the folder "
                            "written by `trajplate posetraj-train` (or the authors' checkpoint-<step>/controlnet)")


def weight_keys(folder: Path) -> set[str]:
    """Parameter names stored in a diffusers weight file of ``folder``."""
    for name in WEIGHT_FILES:
        path = folder / name
        if path.is_file():
            if name.endswith(".safetensors"):
                with safe_open(path, framework="pt") as f:
                    return set(f.keys())
            return set(torch.load(path, map_location="cpu", weights_only=True))
    raise FileNotFoundError(f"{folder}: none of {', '.join(WEIGHT_FILES)}")


def _strict(where: str, info: dict) -> None:
    bad = {k: info.get(k) for k in ("missing_keys", "unexpected_keys", "mismatched_keys") if info.get(k)}
    if bad:
        raise ControlNetFormatError(f"{where}: " + "; ".join(f"{k.replace('_', ' ')} {sorted(map(str, v))[:4]}"
                                                            for k, v in bad.items()))


def load_controlnet(adapter_dir: Path, dtype: torch.dtype) -> ControlNetSDVModel:
    """The Traj-ControlNet (camera variant when its weights have ``cc_projection``), strict, on the CPU."""
    folder = controlnet_folder(adapter_dir)
    camera_dim = CAMERA_DIM if CAMERA_KEY in weight_keys(folder) else 0
    controlnet, info = ControlNetSDVModel.from_pretrained(folder, camera_dim=camera_dim, dtype=dtype,
                                                          output_loading_info=True)
    _strict(str(folder), info)
    return controlnet.eval()


def load_unet(base_dir: Path, dtype: torch.dtype) -> UNetSpatioTemporalConditionControlNetModel:
    unet, info = UNetSpatioTemporalConditionControlNetModel.from_pretrained(
        base_dir, subfolder="unet", dtype=dtype, variant=weight_variant(base_dir), output_loading_info=True)
    _strict(f"{base_dir}/unet", info)
    return unet.eval()


def load_pipeline(base_dir: Path, adapter_dir: Path, dtype: torch.dtype) -> StableVideoDiffusionPipelineControlNet:
    """The whole pipeline on the CPU in ``dtype`` (place it with a memory mode afterwards).

    Raises :class:`ControlNetFormatError` for missing/unexpected keys, FileNotFoundError for missing folders."""
    controlnet = load_controlnet(adapter_dir, dtype)
    unet = load_unet(base_dir, dtype)
    pipe = StableVideoDiffusionPipelineControlNet.from_pretrained(
        base_dir, unet=unet, controlnet=controlnet, dtype=dtype, variant=weight_variant(base_dir))
    pipe.set_progress_bar_config(disable=True)
    return pipe
