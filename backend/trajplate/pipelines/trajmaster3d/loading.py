"""Weights of 3DTrajMaster: the authors' layouts, strict key checks, and tiny random stand-ins (spec §1.6).

Folders (the same for real and tiny weights)::

    base_dir/      THUDM/CogVideoX-5b in diffusers layout: model_index.json, scheduler/, text_encoder/, tokenizer/,
                   vae/ (its transformer/ is not needed: the injector checkpoint holds the full transformer)
    adapter_dir/   KwaiVGI/3DTrajMaster, the authors' ``weights`` folder:
      injector/    diffusers-format full transformer (config.json = stock CogVideoX-5B config; safetensors, sharded
                   with an index for the real one): base weights + transformer_blocks.{0,2,…}.{attn_injector.*,
                   pose_fuse_layer.*, attn_null_feature}
      lora/pytorch_lora_weights.safetensors
                   diffusers/PEFT LoRA of the base transformer, keys
                   transformer.transformer_blocks.{i}.attn1.{to_q,to_k,to_v,to_out.0}.lora_{A,B}.weight

Both checkpoints are compared key by key with the model before anything is loaded; a missing or unexpected key
raises :class:`~trajplate.weights.WeightsError` naming the keys.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Literal

import torch
from accelerate import init_empty_weights
from diffusers import AutoencoderKLCogVideoX, CogVideoXDDIMScheduler, CogVideoXPipeline, CogVideoXTransformer3DModel
from peft import LoraConfig
from peft.utils import get_peft_model_state_dict
from safetensors import safe_open
from transformers import AutoTokenizer, T5EncoderModel

from ...weights import WeightsError
from ..tiny_parts import save_tiny_cogvideox_vae, save_tiny_t5, tiny_cogvideox_transformer_config
from .pipeline import LORA_ADAPTER, TrajMaster3DPipeline
from .transformer import TrajMasterTransformer3DModel

INJECTOR_FOLDER = "injector"
LORA_FOLDER = "lora"
LORA_WEIGHT_NAME = "pytorch_lora_weights.safetensors"
LORA_TARGETS = ("to_q", "to_k", "to_v", "to_out.0")
STOCK_CLASS_NAME = "CogVideoXTransformer3DModel"  # the authors' forked class keeps the stock name in config.json

Annealing = Literal["adapter_switch", "two_copies"]


def _checkpoint_keys(folder: Path, stem: str = "diffusion_pytorch_model") -> set[str]:
    """Tensor names in a diffusers safetensors checkpoint, single file or sharded with an index."""
    index = folder / f"{stem}.safetensors.index.json"
    if index.is_file():
        return set(json.loads(index.read_text())["weight_map"])
    single = folder / f"{stem}.safetensors"
    if not single.is_file():
        raise WeightsError(f"{folder}: no {single.name} nor {index.name}; is this the 3DTrajMaster injector folder?")
    with safe_open(single, framework="pt") as handle:
        return set(handle.keys())


def _key_diff_message(what: str, missing: set[str], unexpected: set[str]) -> str:
    def listed(keys: set[str]) -> str:
        shown = sorted(keys)[:6]
        return ", ".join(shown) + (f" … ({len(keys)} in all)" if len(keys) > len(shown) else "")

    parts = [f"missing {listed(missing)}" if missing else "", f"unexpected {listed(unexpected)}" if unexpected else ""]
    return f"{what}: " + "; ".join(p for p in parts if p)


def check_injector_keys(injector_dir: Path) -> None:
    """Raise WeightsError unless the checkpoint's tensor names equal the model's (built on the meta device)."""
    config = TrajMasterTransformer3DModel.load_config(injector_dir)
    with init_empty_weights():
        expected = set(TrajMasterTransformer3DModel.from_config(config).state_dict())
    found = _checkpoint_keys(injector_dir)
    if found != expected:
        raise WeightsError(
            _key_diff_message(f"injector checkpoint {injector_dir}", expected - found, found - expected)
            + ". It must be the authors' diffusers-format transformer with injectors in every second block."
        )


def expected_lora_keys(num_layers: int) -> set[str]:
    """The authors' LoRA keys: rank-r A/B of to_q/to_k/to_v/to_out.0 of every block's attn1."""
    return {
        f"transformer.transformer_blocks.{block}.attn1.{target}.lora_{ab}.weight"
        for block in range(num_layers) for target in LORA_TARGETS for ab in "AB"
    }


def check_lora_keys(lora_file: Path, num_layers: int) -> None:
    if not lora_file.is_file():
        raise WeightsError(f"{lora_file} does not exist; the 3DTrajMaster adapter needs lora/{LORA_WEIGHT_NAME}")
    with safe_open(lora_file, framework="pt") as handle:
        found = set(handle.keys())
    expected = expected_lora_keys(num_layers)
    if found != expected:
        raise WeightsError(_key_diff_message(f"LoRA {lora_file}", expected - found, found - expected))


def load_pipeline(
    base_dir: Path,
    adapter_dir: Path,
    *,
    dtype: torch.dtype = torch.float32,
    annealing: Annealing = "adapter_switch",
    fused_lora_scale: float = 0.6,
) -> TrajMaster3DPipeline:
    """Build the pipeline on the CPU from the base folder and the authors' adapter folder (layout above).

    annealing: ``adapter_switch`` (default) keeps one transformer with the LoRA as PEFT adapter ``default``, switched
        per step. ``two_copies`` reproduces the authors: a deep copy of the injector transformer without LoRA as
        ``transformer_ori``, and the LoRA fused into ``transformer`` at ``fused_lora_scale`` (then unloaded).
    Raises WeightsError on a missing folder or any key mismatch.
    """
    base_dir, adapter_dir = Path(base_dir), Path(adapter_dir)
    injector_dir = adapter_dir / INJECTOR_FOLDER
    lora_file = adapter_dir / LORA_FOLDER / LORA_WEIGHT_NAME
    if not (base_dir / "model_index.json").is_file():
        raise WeightsError(f"{base_dir} has no model_index.json; expected a diffusers THUDM/CogVideoX-5b folder")
    if not (injector_dir / "config.json").is_file():
        raise WeightsError(f"{injector_dir}/config.json does not exist; expected the authors' injector transformer")
    check_injector_keys(injector_dir)
    transformer = TrajMasterTransformer3DModel.from_pretrained(injector_dir, dtype=dtype)
    check_lora_keys(lora_file, transformer.config.num_layers)

    pipe = TrajMaster3DPipeline.from_pretrained(base_dir, transformer=transformer, dtype=dtype)
    pipe.configure_scheduler()
    plain_copy = copy.deepcopy(transformer) if annealing == "two_copies" else None
    pipe.load_lora_weights(lora_file.parent, weight_name=LORA_WEIGHT_NAME, adapter_name=LORA_ADAPTER)
    if plain_copy is not None:
        pipe.fuse_lora(components=["transformer"], lora_scale=fused_lora_scale)
        pipe.unload_lora_weights()
        pipe.transformer_ori = plain_copy
    return pipe


def _tiny_stock_transformer(overrides: dict, seed: int) -> CogVideoXTransformer3DModel:
    torch.manual_seed(seed)
    return CogVideoXTransformer3DModel(**tiny_cogvideox_transformer_config(**overrides)).eval()


def save_tiny_weights(
    root: Path, *, num_layers: int = 3, sample_height: int = 60, sample_width: int = 90, sample_frames: int = 49,
    lora_rank: int = 4, seed: int = 0,
) -> None:
    """Tiny random weights in the real layouts: ``root/base`` (diffusers CogVideoX without transformer/) and
    ``root/adapter`` (``injector/`` sharded like the authors' and ``lora/``).

    ``sample_*`` are latent sizes (pixels / 8) and pixel frames: the defaults give the native 480×720×49, smaller
    ones let tests run the injector at small sizes. 3 layers put injectors in blocks 0 and 2, none in block 1.
    """
    root = Path(root)
    base, adapter = root / "base", root / "adapter"
    overrides = dict(
        num_layers=num_layers, sample_height=sample_height, sample_width=sample_width, sample_frames=sample_frames
    )
    stock = _tiny_stock_transformer(overrides, seed)

    save_tiny_t5(base, seed=seed)
    save_tiny_cogvideox_vae(base, seed=seed)
    # THUDM/CogVideoX-5b's scheduler config (the pipeline converts it to the DPM scheduler, as the authors do).
    scheduler = CogVideoXDDIMScheduler(
        beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, clip_sample=False,
        prediction_type="v_prediction", rescale_betas_zero_snr=True, set_alpha_to_one=True, snr_shift_scale=1.0,
        timestep_spacing="trailing", steps_offset=0,
    )
    CogVideoXPipeline(
        tokenizer=AutoTokenizer.from_pretrained(base / "tokenizer"),
        text_encoder=T5EncoderModel.from_pretrained(base / "text_encoder"),
        vae=AutoencoderKLCogVideoX.from_pretrained(base / "vae"),
        transformer=stock, scheduler=scheduler,
    ).save_pretrained(base)
    for stale in (base / "transformer").iterdir():  # the preset does not download the base transformer either
        stale.unlink()
    (base / "transformer").rmdir()

    torch.manual_seed(seed + 1)
    injector = TrajMasterTransformer3DModel(**stock.config).eval()
    loaded = injector.load_state_dict(stock.state_dict(), strict=False)
    assert not loaded.unexpected_keys, loaded.unexpected_keys  # only the injector tensors may be left to fill
    for index in injector.injector_blocks:
        block = injector.transformer_blocks[index]
        block.attn_injector.load_state_dict(block.attn1.state_dict())  # the authors' init: a copy of attn1
        torch.nn.init.normal_(block.attn_null_feature, std=0.5)  # trained values are non-zero; zeros would hide it
    injector.save_pretrained(adapter / INJECTOR_FOLDER, max_shard_size="200KB")
    config_file = adapter / INJECTOR_FOLDER / "config.json"
    config = json.loads(config_file.read_text())
    config["_class_name"] = STOCK_CLASS_NAME
    config_file.write_text(json.dumps(config, indent=2))

    # Stage 1 of the authors: a LoRA trained on the base transformer (attn1 only), non-zero B so it has an effect.
    stock.add_adapter(
        LoraConfig(r=lora_rank, lora_alpha=lora_rank, init_lora_weights=False, target_modules=list(LORA_TARGETS))
    )
    CogVideoXPipeline.save_lora_weights(
        adapter / LORA_FOLDER, transformer_lora_layers=get_peft_model_state_dict(stock), weight_name=LORA_WEIGHT_NAME
    )
