"""Weights of TrajectoryCrafter: the authors' layouts, a strict key check, tiny random stand-ins (spec §4.5).

Folders (the same for real and tiny weights)::

    base_dir/      alibaba-pai/CogVideoX-Fun-V1.1-5b-InP: scheduler/, text_encoder/, tokenizer/, vae/ (its
                   transformer/ is replaced and not downloaded)
    adapter_dir/   TrajectoryCrafter/TrajectoryCrafter at the repo root: config.json (``_class_name``
                   CrossTransformer3DModel) + diffusion_pytorch_model safetensors (sharded with an index when large)
    depth/         (tiny only) a randomly initialised Depth Anything V2 in transformers' layout

The transformer checkpoint is compared key by key with the model (built on the meta device) before anything is
loaded; a missing or unexpected key raises :class:`~trajplate.weights.WeightsError` naming the keys.
"""

from __future__ import annotations

import json
from pathlib import Path

import diffusers
import torch
from accelerate import init_empty_weights
from diffusers import AutoencoderKLCogVideoX, CogVideoXDDIMScheduler
from safetensors import safe_open
from transformers import AutoTokenizer, T5EncoderModel

from ...weights import WeightsError
from ..tiny_parts import save_tiny_cogvideox_vae, save_tiny_t5, tiny_cogvideox_transformer_config
from .pipeline import TrajectoryCrafterPipeline
from .transformer import TrajectoryCrafterTransformer3DModel

AUTHORS_CLASS_NAME = "CrossTransformer3DModel"
WEIGHTS_STEM = "diffusion_pytorch_model"


def checkpoint_keys(folder: Path) -> set[str]:
    """Tensor names of a diffusers safetensors checkpoint in ``folder``, single file or sharded with an index."""
    index = folder / f"{WEIGHTS_STEM}.safetensors.index.json"
    if index.is_file():
        return set(json.loads(index.read_text())["weight_map"])
    single = folder / f"{WEIGHTS_STEM}.safetensors"
    if not single.is_file():
        raise WeightsError(f"{folder}: neither {single.name} nor {index.name}; expected the TrajectoryCrafter "
                           "transformer (TrajectoryCrafter/TrajectoryCrafter, repo root)")
    with safe_open(single, framework="pt") as handle:
        return set(handle.keys())


def check_transformer_keys(folder: Path) -> None:
    """Raise WeightsError unless the checkpoint's tensor names equal the model's exactly."""
    if not (folder / "config.json").is_file():
        raise WeightsError(f"{folder}/config.json does not exist; expected the TrajectoryCrafter transformer")
    config = TrajectoryCrafterTransformer3DModel.load_config(folder)
    if not config.get("is_train_cross"):
        raise WeightsError(f"{folder}/config.json: is_train_cross is not true; this is not a Ref-DiT checkpoint")
    with init_empty_weights():
        expected = set(TrajectoryCrafterTransformer3DModel.from_config(config).state_dict())
    found = checkpoint_keys(folder)
    if found != expected:
        def listed(keys: set[str]) -> str:
            shown = sorted(keys)[:6]
            return ", ".join(shown) + (f" … ({len(keys)} in all)" if len(keys) > len(shown) else "")

        parts = [f"missing {listed(expected - found)}" if expected - found else "",
                 f"unexpected {listed(found - expected)}" if found - expected else ""]
        raise WeightsError(f"transformer checkpoint {folder}: " + "; ".join(p for p in parts if p))


def load_pipeline(base_dir: Path, adapter_dir: Path, *, scheduler: str = "DDIMScheduler",
                  dtype: torch.dtype = torch.float32) -> TrajectoryCrafterPipeline:
    """Build the pipeline from the two folders (see the module doc). ``scheduler``: a diffusers scheduler class name,
    built from the base's scheduler config (the authors' default "DDIM_Origin" = ``DDIMScheduler``, which ignores
    the config's ``snr_shift_scale``; it is 1.0 for this base). Raises WeightsError for a missing folder or key."""
    base_dir, adapter_dir = Path(base_dir), Path(adapter_dir)
    for sub in ("scheduler", "text_encoder", "tokenizer", "vae"):
        if not (base_dir / sub).is_dir():
            raise WeightsError(f"{base_dir}/{sub} does not exist; expected CogVideoX-Fun-V1.1-5b-InP's {sub}/")
    check_transformer_keys(adapter_dir)
    scheduler_cls = getattr(diffusers, scheduler, None)
    if scheduler_cls is None:
        raise WeightsError(f"scheduler {scheduler!r} is not a diffusers scheduler class")
    return TrajectoryCrafterPipeline(
        tokenizer=AutoTokenizer.from_pretrained(base_dir / "tokenizer"),
        text_encoder=T5EncoderModel.from_pretrained(base_dir / "text_encoder", dtype=dtype),
        vae=AutoencoderKLCogVideoX.from_pretrained(base_dir / "vae", dtype=dtype),
        transformer=TrajectoryCrafterTransformer3DModel.from_pretrained(adapter_dir, dtype=dtype),
        scheduler=scheduler_cls.from_pretrained(base_dir / "scheduler"),
    )


def tiny_transformer(*, num_layers: int = 2, sample_height: int = 48, sample_width: int = 84, sample_frames: int = 49,
                     seed: int = 0) -> TrajectoryCrafterTransformer3DModel:
    """A tiny Ref-DiT matching the tiny T5 and VAE (4 latent channels: in_channels 4 + 1 + 4 = 9), random weights
    with non-zero Perceivers so they have an effect."""
    torch.manual_seed(seed)
    config = tiny_cogvideox_transformer_config(
        in_channels=9, out_channels=4, num_layers=num_layers, sample_height=sample_height, sample_width=sample_width,
        sample_frames=sample_frames,
    )
    model = TrajectoryCrafterTransformer3DModel(
        **config, is_train_cross=True, cross_attn_in_channels=4, cross_attn_interval=2, cross_attn_dim_head=16,
        cross_attn_num_heads=2,
    )
    return model.eval()


def save_tiny_weights(root: Path, *, num_layers: int = 2, sample_height: int = 48, sample_width: int = 84,
                      sample_frames: int = 49, seed: int = 0) -> None:
    """``sample_*``: latent height/width and pixel frames of the native size (default 384×672×49; smaller ones let
    tests run the same code fast). ``root/base`` (tiny T5, VAE, CogVideoX-Fun's DDIM scheduler config, model_index.json), ``root/adapter`` (the
    tiny transformer at the folder root, sharded with an index, ``_class_name`` as the authors') and ``root/depth``."""
    from .depth import save_tiny_depth_model

    root = Path(root)
    base, adapter = root / "base", root / "adapter"
    save_tiny_t5(base, seed=seed)
    save_tiny_cogvideox_vae(base, seed=seed)
    # CogVideoX-Fun-V1.1-5b-InP ships CogVideoX's DDIM config (snr_shift_scale 1.0); the authors load it as DDIM.
    CogVideoXDDIMScheduler(
        beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, clip_sample=False,
        prediction_type="v_prediction", rescale_betas_zero_snr=True, set_alpha_to_one=True, snr_shift_scale=1.0,
        timestep_spacing="trailing", steps_offset=0,
    ).save_pretrained(base / "scheduler")
    (base / "model_index.json").write_text(json.dumps({
        "_class_name": "CogVideoXPipeline", "_diffusers_version": diffusers.__version__,
        "scheduler": ["diffusers", "CogVideoXDDIMScheduler"], "text_encoder": ["transformers", "T5EncoderModel"],
        "tokenizer": ["transformers", "PreTrainedTokenizerFast"], "transformer": [None, None],
        "vae": ["diffusers", "AutoencoderKLCogVideoX"],
    }, indent=2))
    transformer = tiny_transformer(num_layers=num_layers, sample_height=sample_height, sample_width=sample_width,
                                   sample_frames=sample_frames, seed=seed + 1)
    transformer.save_pretrained(adapter, max_shard_size="200KB")
    config_file = adapter / "config.json"
    config = json.loads(config_file.read_text())
    config["_class_name"] = AUTHORS_CLASS_NAME
    for key in ("ofs_embed_dim", "patch_size_t", "use_learned_positional_embeddings", "patch_bias"):
        config.pop(key)  # keys newer than the authors' config; the defaults apply
    config_file.write_text(json.dumps(config, indent=2))
    save_tiny_depth_model(root / "depth", seed=seed)
