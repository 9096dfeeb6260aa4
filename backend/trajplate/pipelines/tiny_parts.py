"""Tiny randomly initialised components shared by the pipelines' ``build_tiny``.

The values follow diffusers' own test configs (tests/pipelines/cogvideo, stable_video_diffusion;
see specs/serving-and-performance.md §3.5): same classes as the real checkpoints, so saving and
reloading exercises the real ``from_pretrained`` code offline. Everything here is built with a
fixed seed and saved in diffusers' folder layout (``<root>/<component>/``).
"""

from __future__ import annotations

from pathlib import Path

import torch

# A small vocabulary for an offline T5 tokenizer; real prompts tokenise to <unk> mostly, which is fine
# for tiny models (the text path is still exercised end to end).
_TINY_WORDS = (
    "a the of and in on to with red blue green car dog cat man woman person walks runs flies moves "
    "turns left right forward street city park forest beach road sky field room table robot horse bird"
).split()

T5_D_MODEL = 32


def save_tiny_t5(root: Path, *, seed: int = 0) -> None:
    """Write ``root/text_encoder`` (T5EncoderModel, d_model 32) and ``root/tokenizer`` (fast tokenizer).

    The tokenizer is built with the ``tokenizers`` library (WordLevel, whitespace split) because the
    real T5 SentencePiece model cannot be downloaded here; pad id 0, eos id 1, unk id 2 as in T5.
    """
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast, T5Config, T5EncoderModel

    torch.manual_seed(seed)
    config = T5Config(
        vocab_size=64, d_model=T5_D_MODEL, d_ff=37, d_kv=8, num_heads=4, num_layers=2,
        relative_attention_num_buckets=8, feed_forward_proj="relu", dropout_rate=0.0,
        layer_norm_epsilon=1e-6, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0,
    )
    T5EncoderModel(config).eval().save_pretrained(root / "text_encoder")

    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2}
    for word in _TINY_WORDS:
        vocab.setdefault(word, len(vocab))
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="<pad>", eos_token="</s>", unk_token="<unk>", model_max_length=226
    )
    tokenizer.save_pretrained(root / "tokenizer")


def save_tiny_cogvideox_vae(root: Path, *, seed: int = 0) -> None:
    """Write ``root/vae``: AutoencoderKLCogVideoX, 8× spatial and 4× temporal compression like the real one."""
    from diffusers import AutoencoderKLCogVideoX

    torch.manual_seed(seed)
    AutoencoderKLCogVideoX(
        in_channels=3, out_channels=3,
        down_block_types=("CogVideoXDownBlock3D",) * 4, up_block_types=("CogVideoXUpBlock3D",) * 4,
        block_out_channels=(8, 8, 8, 8), latent_channels=4, layers_per_block=1, norm_num_groups=2,
        temporal_compression_ratio=4,
    ).eval().save_pretrained(root / "vae")


def tiny_cogvideox_transformer_config(**overrides) -> dict:
    """Keyword arguments for a tiny ``CogVideoXTransformer3DModel`` matching the tiny T5 and VAE.

    heads 2 × head_dim 16 (RoPE needs head_dim % 16 == 0), text_embed_dim = T5 d_model, 4 latent channels.
    Override ``num_layers``, ``in_channels``, ``sample_height/width`` (latent pixels) etc. per pipeline.
    """
    config = dict(
        num_attention_heads=2, attention_head_dim=16, in_channels=4, out_channels=4, time_embed_dim=2,
        text_embed_dim=T5_D_MODEL, num_layers=2, sample_width=90, sample_height=60, sample_frames=49,
        patch_size=2, temporal_compression_ratio=4, max_text_seq_length=16,
        use_rotary_positional_embeddings=True,
    )
    config.update(overrides)
    return config


def save_tiny_svd_components(root: Path, *, seed: int = 0) -> None:
    """Write ``root/{image_encoder,feature_extractor,vae,scheduler}`` of a tiny Stable Video Diffusion.

    The CLIP vision tower uses image_size 224 / patch 32 (49 patches) so the pipeline's PIL path, which
    resizes to 224×224, works (spec §3.4 gotcha).
    """
    from diffusers import AutoencoderKLTemporalDecoder, EulerDiscreteScheduler
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(seed)
    CLIPVisionModelWithProjection(
        CLIPVisionConfig(
            hidden_size=32, projection_dim=32, num_hidden_layers=2, num_attention_heads=4,
            image_size=224, intermediate_size=37, patch_size=32,
        )
    ).eval().save_pretrained(root / "image_encoder")
    CLIPImageProcessor(crop_size=224, size=224).save_pretrained(root / "feature_extractor")
    torch.manual_seed(seed)
    AutoencoderKLTemporalDecoder(
        block_out_channels=[32, 64], in_channels=3, out_channels=3,
        down_block_types=["DownEncoderBlock2D", "DownEncoderBlock2D"], latent_channels=4,
    ).eval().save_pretrained(root / "vae")
    EulerDiscreteScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", interpolation_type="linear",
        prediction_type="v_prediction", sigma_max=700.0, sigma_min=0.002, steps_offset=1,
        timestep_spacing="leading", timestep_type="continuous", use_karras_sigmas=True,
    ).save_pretrained(root / "scheduler")


def tiny_svd_unet_config(**overrides) -> dict:
    """Keyword arguments for a tiny ``UNetSpatioTemporalConditionModel`` (diffusers' SVD test config)."""
    config = dict(
        block_out_channels=(32, 64), layers_per_block=2, sample_size=32, in_channels=8, out_channels=4,
        down_block_types=("CrossAttnDownBlockSpatioTemporal", "DownBlockSpatioTemporal"),
        up_block_types=("UpBlockSpatioTemporal", "CrossAttnUpBlockSpatioTemporal"),
        cross_attention_dim=32, num_attention_heads=8, projection_class_embeddings_input_dim=96,
        addition_time_embed_dim=32,
    )
    config.update(overrides)
    return config
