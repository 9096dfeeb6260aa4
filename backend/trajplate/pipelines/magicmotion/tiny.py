"""Tiny random MagicMotion weights in the real layouts, for tests and the demo (no downloads).

``root/base``: a diffusers ``CogVideoXImageToVideoPipeline`` folder like THUDM/CogVideoX-5b-I2V (``model_index.json``,
tokenizer, T5, VAE, I2V transformer with learned positional embeddings, and the repo's ``CogVideoXDDIMScheduler``
config that the authors load as ``CogVideoXDPMScheduler``). ``root/adapter``: quanhaol/MagicMotion's layout —
``stage1/mask.pt``, ``stage2/box.pt``, ``stage2/box_perception_head.pt``, ``stage3/sparse_box.pt``,
``stage3/sparse_box_perception_head.pt``, each a torch pickle ``{"state_dict": {name: tensor}}``. The ControlNets get
PyTorch's default (non-zero) init on their projections so that they visibly steer the tiny model.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch
from diffusers import (
    AutoencoderKLCogVideoX,
    CogVideoXDDIMScheduler,
    CogVideoXImageToVideoPipeline,
    CogVideoXTransformer3DModel,
)
from transformers import AutoTokenizer, T5EncoderModel

from ..tiny_parts import save_tiny_cogvideox_vae, save_tiny_t5, tiny_cogvideox_transformer_config
from .checkpoint import AUTHORS_KEY
from .models import SemanticFPNHead, TrajectoryControlNet

STAGES = {"mask": "stage1/mask.pt", "box": "stage2/box.pt", "sparse_box": "stage3/sparse_box.pt"}
HEADS = {"box": "stage2/box_perception_head.pt", "sparse_box": "stage3/sparse_box_perception_head.pt"}

# THUDM/CogVideoX-5b-I2V scheduler/scheduler_config.json values.
I2V_SCHEDULER = dict(
    beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False, num_train_timesteps=1000,
    prediction_type="v_prediction", rescale_betas_zero_snr=True, set_alpha_to_one=True, snr_shift_scale=1.0,
    steps_offset=0, timestep_spacing="trailing",
)


def build(root: Path, *, frames: int = 49, height: int = 480, width: int = 720, seed: int = 0) -> None:
    """Write ``root/base`` and ``root/adapter`` (see module doc) for videos of ``frames`` × ``height`` × ``width``.

    height and width must be multiples of 16 (VAE ×8, patch 2); frames ≡ 1 (mod 4) (VAE ×4 in time).
    """
    # The CogVideoX VAE decodes latents in pairs and only an odd latent count gives back 4k+1 frames (13 latents ->
    # 49 frames), so frames must be 8k+1 (9, 17, 25, ... 49).
    if height % 16 or width % 16 or (frames - 1) % 8:
        raise ValueError(f"tiny MagicMotion size {frames}×{height}×{width}: need H, W multiples of 16, frames = 8k+1")
    parts = root / "parts"
    save_tiny_t5(parts, seed=seed)
    save_tiny_cogvideox_vae(parts, seed=seed)
    torch.manual_seed(seed)
    transformer = CogVideoXTransformer3DModel(**tiny_cogvideox_transformer_config(
        in_channels=8, out_channels=4, use_learned_positional_embeddings=True,
        sample_height=height // 8, sample_width=width // 8, sample_frames=frames,
    )).eval()
    CogVideoXImageToVideoPipeline(
        tokenizer=AutoTokenizer.from_pretrained(parts / "tokenizer"),
        text_encoder=T5EncoderModel.from_pretrained(parts / "text_encoder").eval(),
        vae=AutoencoderKLCogVideoX.from_pretrained(parts / "vae").eval(),
        transformer=transformer,
        scheduler=CogVideoXDDIMScheduler(**I2V_SCHEDULER),
    ).save_pretrained(root / "base")
    shutil.rmtree(parts)

    for i, (stage, rel) in enumerate(STAGES.items()):
        torch.manual_seed(seed + 1 + i)
        controlnet = TrajectoryControlNet.from_transformer_config(transformer.config)
        for proj in controlnet.out_projectors:
            proj.reset_parameters()
        _save_authors_pickle(controlnet, root / "adapter" / rel)
        if stage in HEADS:
            _save_authors_pickle(SemanticFPNHead.from_transformer_config(transformer.config), root / "adapter" / HEADS[stage])


def _save_authors_pickle(module: torch.nn.Module, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({AUTHORS_KEY: module.state_dict()}, path)
