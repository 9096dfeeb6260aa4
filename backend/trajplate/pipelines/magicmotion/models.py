"""MagicMotion's modules on diffusers 0.42 (specs/pipelines.md §5.1), parameter names as in the authors' checkpoints.

* :class:`MagicMotionTransformer3DModel` — stock ``CogVideoXTransformer3DModel`` (weights straight from
  THUDM/CogVideoX-5b-I2V) whose forward adds ``controlnet_states[i] * weight_i`` after block ``i``.
* :class:`TrajectoryControlNet` — a copy of the CogVideoX blocks fed the noisy latents concatenated with the
  trajectory-map latents, with a zero-initialised 1×1 projection after every block (``out_projectors.{i}``).
* :class:`SemanticFPNHead` — the latent segmentation head, parameters only: the authors use it as a training loss
  and discard its output at inference, so TrajPlate never runs it; it exists so its checkpoint can be checked and
  converted with the same strict key rules.

Where we knowingly differ from the authors' code (numerically equivalent, not bit-identical everywhere):
* the ControlNet's ``InflatedConv3d`` (a 1×1 conv per latent frame) runs as the equivalent per-token linear map, which
  skips two reshapes of a (B·13, 3072, 30, 45) tensor per block;
* the ControlNet can yield its residuals one block at a time (``lazy=True``) so the pipeline runs both branches in
  lock-step: the authors hold all 42 residuals at once (42 × 2 × 17,550 × 3072 bf16 ≈ 9 GB at 49×480×720 with CFG),
  we hold one. Each branch still computes exactly the same operations in the same order;
* the segmentation head is not computed (its output is discarded by the authors anyway);
* the final LayerNorm runs on the video tokens only (diffusers 0.42) instead of on text+video then slicing — LayerNorm
  is per token, so the result is the same.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.embeddings import CogVideoXPatchEmbed, TimestepEmbedding, Timesteps
from diffusers.models.modeling_outputs import Transformer2DModelOutput
from diffusers.models.modeling_utils import ModelMixin
from diffusers.models.transformers.cogvideox_transformer_3d import CogVideoXBlock, CogVideoXTransformer3DModel
from diffusers.utils import apply_lora_scale
from torch import nn

ControlNetWeights = float | Sequence[float] | torch.Tensor


def block_weights(weights: ControlNetWeights, num_blocks: int) -> list[float]:
    """A scalar or one weight per block -> ``num_blocks`` floats. Raises ValueError naming the expected length."""
    if isinstance(weights, int | float):
        return [float(weights)] * num_blocks
    values = [float(w) for w in (weights.tolist() if isinstance(weights, torch.Tensor) else weights)]
    if len(values) != num_blocks:
        raise ValueError(f"controlnet_weights: {len(values)} per-block weights given, the ControlNet has {num_blocks}")
    return values


class MagicMotionTransformer3DModel(CogVideoXTransformer3DModel):
    """CogVideoX transformer that adds a ControlNet residual after each block (same config and weights as stock)."""

    @apply_lora_scale("attention_kwargs")
    def forward(
        self,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        timestep: int | float | torch.LongTensor,
        timestep_cond: torch.Tensor | None = None,
        ofs: int | float | torch.LongTensor | None = None,
        image_rotary_emb: tuple[torch.Tensor, torch.Tensor] | None = None,
        attention_kwargs: dict[str, Any] | None = None,
        return_dict: bool = True,
        controlnet_states: Sequence[torch.Tensor] | Iterator[torch.Tensor] | None = None,
        controlnet_weights: ControlNetWeights = 1.0,
    ) -> tuple[torch.Tensor] | Transformer2DModelOutput:
        """Stock forward plus ``hidden_states += controlnet_states[i] * weight_i`` after block ``i``.

        hidden_states: (B, T, C, h, w) latents (noise ‖ image latents for I2V); encoder_hidden_states: (B, L, D) text;
        controlnet_states: per-block (B, T·h/p·w/p, inner_dim) residuals, a sequence or an iterator consumed one per
        block (blocks past its end get none, as in the authors' code); controlnet_weights: a float or one per block.
        Returns the (B, T, C_out, h, w) prediction like the stock model.
        """
        batch_size, num_frames, _, height, width = hidden_states.shape
        weights = block_weights(controlnet_weights, len(self.transformer_blocks))
        residuals = iter(controlnet_states) if controlnet_states is not None else iter(())

        t_emb = self.time_proj(timestep).to(dtype=hidden_states.dtype)
        emb = self.time_embedding(t_emb, timestep_cond)
        if self.ofs_embedding is not None:
            emb = emb + self.ofs_embedding(self.ofs_proj(ofs).to(dtype=hidden_states.dtype))

        hidden_states = self.embedding_dropout(self.patch_embed(encoder_hidden_states, hidden_states))
        text_seq_length = encoder_hidden_states.shape[1]
        encoder_hidden_states = hidden_states[:, :text_seq_length]
        hidden_states = hidden_states[:, text_seq_length:]

        for block, weight in zip(self.transformer_blocks, weights, strict=True):
            hidden_states, encoder_hidden_states = block(
                hidden_states=hidden_states,
                encoder_hidden_states=encoder_hidden_states,
                temb=emb,
                image_rotary_emb=image_rotary_emb,
                attention_kwargs=attention_kwargs,
            )
            residual = next(residuals, None)
            if residual is not None:
                hidden_states = hidden_states + residual.to(hidden_states.dtype) * weight

        hidden_states = self.norm_final(hidden_states)
        hidden_states = self.proj_out(self.norm_out(hidden_states, temb=emb))

        p, p_t = self.config.patch_size, self.config.patch_size_t
        if p_t is None:
            output = hidden_states.reshape(batch_size, num_frames, height // p, width // p, -1, p, p)
            output = output.permute(0, 1, 4, 2, 5, 3, 6).flatten(5, 6).flatten(3, 4)
        else:
            output = hidden_states.reshape(
                batch_size, (num_frames + p_t - 1) // p_t, height // p, width // p, -1, p_t, p, p
            )
            output = output.permute(0, 1, 5, 4, 2, 6, 3, 7).flatten(6, 7).flatten(4, 5).flatten(1, 2)
        if not return_dict:
            return (output,)
        return Transformer2DModelOutput(sample=output)


class FrameConv1x1(nn.Conv2d):
    """The authors' ``InflatedConv3d`` with a 1×1 kernel (a conv per latent frame), run as a per-token linear map.

    Parameters keep the Conv2d layout (``weight`` (C, C, 1, 1), ``bias`` (C,)) so the checkpoints load unchanged.
    """

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:  # (B, S, C) -> (B, S, C)
        return F.linear(tokens, self.weight.flatten(1), self.bias)


class TrajectoryControlNet(ModelMixin, ConfigMixin):
    """MagicMotion's trajectory ControlNet, built from the base transformer's config (42 blocks, 3072 wide for 5B).

    Input: noisy video latents (16 ch, scaled by the scheduler) concatenated with the VAE-encoded trajectory-map
    latents (16 ch) — the image latents are not given to it. ``in_channels`` is therefore the I2V transformer's 32.
    """

    _no_split_modules = ["CogVideoXBlock", "CogVideoXPatchEmbed"]

    @register_to_config
    def __init__(
        self,
        num_attention_heads: int = 30,
        attention_head_dim: int = 64,
        in_channels: int = 16,
        out_channels: int | None = 16,
        flip_sin_to_cos: bool = True,
        freq_shift: int = 0,
        time_embed_dim: int = 512,
        ofs_embed_dim: int | None = None,
        text_embed_dim: int = 4096,
        num_layers: int = 30,
        dropout: float = 0.0,
        attention_bias: bool = True,
        sample_width: int = 90,
        sample_height: int = 60,
        sample_frames: int = 49,
        patch_size: int = 2,
        patch_size_t: int | None = None,
        temporal_compression_ratio: int = 4,
        max_text_seq_length: int = 226,
        activation_fn: str = "gelu-approximate",
        timestep_activation_fn: str = "silu",
        norm_elementwise_affine: bool = True,
        norm_eps: float = 1e-5,
        spatial_interpolation_scale: float = 1.875,
        temporal_interpolation_scale: float = 1.0,
        use_rotary_positional_embeddings: bool = False,
        use_learned_positional_embeddings: bool = False,
        patch_bias: bool = True,
    ):
        super().__init__()
        inner_dim = num_attention_heads * attention_head_dim
        self.patch_embed = CogVideoXPatchEmbed(
            patch_size=patch_size,
            patch_size_t=patch_size_t,
            in_channels=in_channels,
            embed_dim=inner_dim,
            text_embed_dim=text_embed_dim,
            bias=patch_bias,
            sample_width=sample_width,
            sample_height=sample_height,
            sample_frames=sample_frames,
            temporal_compression_ratio=temporal_compression_ratio,
            max_text_seq_length=max_text_seq_length,
            spatial_interpolation_scale=spatial_interpolation_scale,
            temporal_interpolation_scale=temporal_interpolation_scale,
            use_positional_embeddings=not use_rotary_positional_embeddings,
            use_learned_positional_embeddings=use_learned_positional_embeddings,
        )
        self.embedding_dropout = nn.Dropout(dropout)
        self.time_proj = Timesteps(inner_dim, flip_sin_to_cos, freq_shift)
        self.time_embedding = TimestepEmbedding(inner_dim, time_embed_dim, timestep_activation_fn)
        self.ofs_proj = Timesteps(ofs_embed_dim, flip_sin_to_cos, freq_shift) if ofs_embed_dim else None
        self.ofs_embedding = (
            TimestepEmbedding(ofs_embed_dim, ofs_embed_dim, timestep_activation_fn) if ofs_embed_dim else None
        )
        self.transformer_blocks = nn.ModuleList(
            CogVideoXBlock(
                dim=inner_dim,
                num_attention_heads=num_attention_heads,
                attention_head_dim=attention_head_dim,
                time_embed_dim=time_embed_dim,
                dropout=dropout,
                activation_fn=activation_fn,
                attention_bias=attention_bias,
                norm_elementwise_affine=norm_elementwise_affine,
                norm_eps=norm_eps,
            )
            for _ in range(num_layers)
        )
        self.out_projectors = nn.ModuleList(FrameConv1x1(inner_dim, inner_dim, kernel_size=1) for _ in range(num_layers))
        for proj in self.out_projectors:  # zero-initialised: a fresh ControlNet leaves the base model unchanged
            nn.init.zeros_(proj.weight)
            nn.init.zeros_(proj.bias)

    @classmethod
    def from_transformer_config(cls, transformer_config: dict[str, Any]) -> TrajectoryControlNet:
        """Build (randomly initialised, zero projections) from the base transformer's config, as the authors do."""
        keys = cls.extract_init_dict(dict(transformer_config))[0]
        return cls(**keys)

    def forward(
        self,
        hidden_states: torch.Tensor,
        trajectory_hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        timestep: int | float | torch.LongTensor,
        image_rotary_emb: tuple[torch.Tensor, torch.Tensor] | None = None,
        timestep_cond: torch.Tensor | None = None,
        ofs: int | float | torch.LongTensor | None = None,
        lazy: bool = False,
    ) -> tuple[torch.Tensor, ...] | Iterator[torch.Tensor]:
        """Per-block residuals for :class:`MagicMotionTransformer3DModel`.

        hidden_states: (B, T, C, h, w) scaled noisy latents; trajectory_hidden_states: (B, T, C, h, w) trajectory-map
        latents; encoder_hidden_states: (B, L, D) text embeddings; image_rotary_emb: the main branch's RoPE.
        Returns ``num_layers`` tensors (B, T·h/p·w/p, inner_dim): a tuple, or with ``lazy`` an iterator that runs
        block ``i`` only when residual ``i`` is requested (the embeddings are computed before returning, inside this
        module's call, so offloading hooks on the top-level module still apply to them).
        """
        hidden_states = torch.cat([hidden_states, trajectory_hidden_states], dim=2)
        t_emb = self.time_proj(timestep).to(dtype=hidden_states.dtype)
        emb = self.time_embedding(t_emb, timestep_cond)
        if self.ofs_embedding is not None:
            emb = emb + self.ofs_embedding(self.ofs_proj(ofs).to(dtype=hidden_states.dtype))

        hidden_states = self.embedding_dropout(self.patch_embed(encoder_hidden_states, hidden_states))
        text_seq_length = encoder_hidden_states.shape[1]
        residuals = self._residuals(
            hidden_states[:, text_seq_length:], hidden_states[:, :text_seq_length], emb, image_rotary_emb
        )
        return residuals if lazy else tuple(residuals)

    def _residuals(
        self,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        temb: torch.Tensor,
        image_rotary_emb: tuple[torch.Tensor, torch.Tensor] | None,
    ) -> Iterator[torch.Tensor]:
        for block, proj in zip(self.transformer_blocks, self.out_projectors, strict=True):
            hidden_states, encoder_hidden_states = block(
                hidden_states=hidden_states,
                encoder_hidden_states=encoder_hidden_states,
                temb=temb,
                image_rotary_emb=image_rotary_emb,
            )
            yield proj(hidden_states)


class SemanticFPNHead(nn.Module):
    """Parameters of the authors' latent segmentation head (``*_perception_head.pt``); never run by TrajPlate.

    ``num_tensors`` parallel ``[Conv3x3(in→64), GroupNorm(16, 64), ReLU]`` branches and a ``Conv1x1(64→out)``; keys
    ``convs.{i}.0.*``, ``convs.{i}.1.*``, ``conv_out.*``.
    """

    def __init__(self, in_channels: int, out_channels: int, num_tensors: int, hidden_dim: int = 64, num_groups: int = 16):
        super().__init__()
        self.convs = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(in_channels, hidden_dim, kernel_size=3, padding=1),
                nn.GroupNorm(min(num_groups, hidden_dim), hidden_dim),
                nn.ReLU(),
            )
            for _ in range(num_tensors)
        )
        self.conv_out = nn.Conv2d(hidden_dim, out_channels, kernel_size=1)

    @classmethod
    def from_transformer_config(cls, transformer_config: dict[str, Any]) -> SemanticFPNHead:
        """The head the authors attach to the 5B transformer: one branch per block, ``in_channels // 2`` outputs."""
        c = transformer_config
        return cls(c["num_attention_heads"] * c["attention_head_dim"], c["in_channels"] // 2, c["num_layers"])
