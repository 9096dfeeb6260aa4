"""TrajectoryCrafter's Ref-DiT on diffusers 0.42's CogVideoX transformer (specs/pipelines.md §4.1, §4.2).

The authors' ``CrossTransformer3DModel`` is a fork of diffusers 0.31's CogVideoX transformer that no longer constructs
on current diffusers (``torch.from_numpy`` over a tensor, issue #23). :class:`TrajectoryCrafterTransformer3DModel`
subclasses the stock class instead; its config and parameter names are the authors' released ones, so their
``config.json`` + safetensors load with ``from_pretrained`` and zero missing or unexpected keys:

* ``in_channels`` 33 = 16 noise latents + 1 mask latent + 16 masked-video latents (``inpaint_latents``, concatenated
  on the channel axis before the patch embedding, as the authors);
* ``ref_patch_embed.proj`` — Conv2d(16 → 3072, kernel 2, stride 2) turning the reference-clip latents into tokens
  (no positional encoding);
* ``perceiver_cross_attention.{k}`` — ``num_layers // cross_attn_interval`` (21) :class:`PerceiverCrossAttention`
  modules; after transformer block ``i`` with ``i % cross_attn_interval == 0`` the video tokens (not the text tokens)
  get ``+= perceiver_k(reference_tokens, video_tokens)``.

Where we knowingly differ: the Perceiver runs ``scaled_dot_product_attention`` (fused kernels, no materialised
13,104 × 3,024 × 16-head score tensor — the authors' explicit fp32 softmax of it is what "doubles GPU memory") instead
of ``softmax((q·d^-¼)(k·d^-¼)ᵀ)``; mathematically the same, equal to float rounding. The final LayerNorm runs on the
video tokens only (diffusers 0.42) where the authors normalise text+video and slice: per token, so identical.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from diffusers import CogVideoXTransformer3DModel
from diffusers.configuration_utils import register_to_config
from diffusers.models.modeling_outputs import Transformer2DModelOutput
from diffusers.utils import apply_lora_scale
from torch import nn


class RefPatchEmbed(nn.Module):
    """(B, f, C, h, w) reference latents -> (B, f·h/p·w/p, D) tokens; parameter ``proj`` as the authors'."""

    def __init__(self, patch_size: int, in_channels: int, embed_dim: int):
        super().__init__()
        self.proj = nn.Conv2d(in_channels, embed_dim, kernel_size=patch_size, stride=patch_size, bias=True)

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        b, f = latents.shape[:2]
        tokens = self.proj(latents.flatten(0, 1).to(self.proj.weight.dtype))  # (B·f, D, h/p, w/p)
        return tokens.flatten(2).transpose(1, 2).unflatten(0, (b, f)).flatten(1, 2)


class PerceiverCrossAttention(nn.Module):
    """Video tokens (queries) attend to reference tokens (keys/values); bias-free projections, parameter names as the
    authors' (``norm1`` on the reference tokens, ``norm2`` on the video tokens, ``to_q``, ``to_kv``, ``to_out``)."""

    def __init__(self, dim: int, dim_head: int, heads: int):
        super().__init__()
        self.heads = heads
        inner = dim_head * heads
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_kv = nn.Linear(dim, inner * 2, bias=False)
        self.to_out = nn.Linear(inner, dim, bias=False)

    def forward(self, reference: torch.Tensor, video: torch.Tensor) -> torch.Tensor:
        """reference: (B, R, D); video: (B, V, D). Returns the (B, V, D) update (added by the caller)."""
        q = self.to_q(self.norm2(video)).unflatten(-1, (self.heads, -1)).transpose(1, 2)
        k, v = (t.unflatten(-1, (self.heads, -1)).transpose(1, 2) for t in self.to_kv(self.norm1(reference)).chunk(2, -1))
        out = F.scaled_dot_product_attention(q, k, v)
        return self.to_out(out.transpose(1, 2).flatten(2))


class TrajectoryCrafterTransformer3DModel(CogVideoXTransformer3DModel):
    """CogVideoX-Fun inpainting transformer + Ref-DiT. Stock config keys plus the authors' ``add_noise_in_inpaint_model``,
    ``is_train_cross`` and ``cross_attn_*`` (see the module doc)."""

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
        add_noise_in_inpaint_model: bool = False,
        is_train_cross: bool = False,
        cross_attn_in_channels: int = 16,
        cross_attn_interval: int = 2,
        cross_attn_dim_head: int = 128,
        cross_attn_num_heads: int = 16,
    ):
        super().__init__(
            num_attention_heads=num_attention_heads, attention_head_dim=attention_head_dim, in_channels=in_channels,
            out_channels=out_channels, flip_sin_to_cos=flip_sin_to_cos, freq_shift=freq_shift,
            time_embed_dim=time_embed_dim, ofs_embed_dim=ofs_embed_dim, text_embed_dim=text_embed_dim,
            num_layers=num_layers, dropout=dropout, attention_bias=attention_bias, sample_width=sample_width,
            sample_height=sample_height, sample_frames=sample_frames, patch_size=patch_size, patch_size_t=patch_size_t,
            temporal_compression_ratio=temporal_compression_ratio, max_text_seq_length=max_text_seq_length,
            activation_fn=activation_fn, timestep_activation_fn=timestep_activation_fn,
            norm_elementwise_affine=norm_elementwise_affine, norm_eps=norm_eps,
            spatial_interpolation_scale=spatial_interpolation_scale,
            temporal_interpolation_scale=temporal_interpolation_scale,
            use_rotary_positional_embeddings=use_rotary_positional_embeddings,
            use_learned_positional_embeddings=use_learned_positional_embeddings, patch_bias=patch_bias,
        )
        if is_train_cross:
            inner_dim = num_attention_heads * attention_head_dim
            self.ref_patch_embed = RefPatchEmbed(patch_size, cross_attn_in_channels, inner_dim)
            self.perceiver_cross_attention = nn.ModuleList(
                PerceiverCrossAttention(inner_dim, cross_attn_dim_head, cross_attn_num_heads)
                for _ in range(num_layers // cross_attn_interval)
            )

    @apply_lora_scale("attention_kwargs")
    def forward(
        self,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        timestep: int | float | torch.LongTensor,
        timestep_cond: torch.Tensor | None = None,
        inpaint_latents: torch.Tensor | None = None,
        cross_latents: torch.Tensor | None = None,
        image_rotary_emb: tuple[torch.Tensor, torch.Tensor] | None = None,
        attention_kwargs: dict[str, Any] | None = None,
        return_dict: bool = True,
    ) -> tuple[torch.Tensor] | Transformer2DModelOutput:
        """hidden_states: (B, f, C, h, w) noisy latents; inpaint_latents: (B, f, 1 + C, h, w) mask ‖ masked-video
        latents (required when ``in_channels`` exceeds C); cross_latents: (B, f_ref, C_ref, h, w) reference latents
        (required with ``is_train_cross``); encoder_hidden_states: (B, L, D_text). Returns the (B, f, C_out, h, w)
        prediction. Raises ValueError when a required input is missing."""
        batch_size, num_frames, _, height, width = hidden_states.shape
        if inpaint_latents is not None:
            hidden_states = torch.cat([hidden_states, inpaint_latents.to(hidden_states.dtype)], dim=2)
        if hidden_states.shape[2] != self.config.in_channels:
            raise ValueError(f"hidden_states (+ inpaint_latents): {hidden_states.shape[2]} channels; the model takes "
                             f"{self.config.in_channels} (noise ‖ mask ‖ masked-video latents)")
        cross = self.config.is_train_cross
        if cross and cross_latents is None:
            raise ValueError("cross_latents: required (the reference-clip latents) by this Ref-DiT transformer")

        emb = self.time_embedding(self.time_proj(timestep).to(dtype=hidden_states.dtype), timestep_cond)
        hidden_states = self.embedding_dropout(self.patch_embed(encoder_hidden_states, hidden_states))
        text_seq_length = encoder_hidden_states.shape[1]
        encoder_hidden_states = hidden_states[:, :text_seq_length]
        hidden_states = hidden_states[:, text_seq_length:]
        reference = self.ref_patch_embed(cross_latents) if cross else None

        interval = self.config.cross_attn_interval
        for i, block in enumerate(self.transformer_blocks):
            hidden_states, encoder_hidden_states = block(
                hidden_states=hidden_states, encoder_hidden_states=encoder_hidden_states, temb=emb,
                image_rotary_emb=image_rotary_emb, attention_kwargs=attention_kwargs,
            )
            if cross and i % interval == 0 and i // interval < len(self.perceiver_cross_attention):
                hidden_states = hidden_states + self.perceiver_cross_attention[i // interval](reference, hidden_states)

        hidden_states = self.proj_out(self.norm_out(self.norm_final(hidden_states), temb=emb))
        p = self.config.patch_size
        output = hidden_states.reshape(batch_size, num_frames, height // p, width // p, -1, p, p)
        output = output.permute(0, 1, 4, 2, 5, 3, 6).flatten(5, 6).flatten(3, 4)
        if not return_dict:
            return (output,)
        return Transformer2DModelOutput(sample=output)
