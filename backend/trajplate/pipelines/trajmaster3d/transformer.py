"""3DTrajMaster's object injector on diffusers 0.42's CogVideoX transformer (specs/pipelines.md §1.2, §1.3).

Parameter names match the authors' saved transformer (``weights/injector``): every block whose index is a multiple
of :data:`INJECTOR_BLOCK_INTERVAL` owns ``attn_injector`` (an ``Attention`` shaped like ``attn1``),
``pose_fuse_layer`` (``Linear(12, dim)``) and ``attn_null_feature`` (``(dim,)``), so the authors' checkpoint loads with
``from_pretrained`` and zero missing or unexpected keys. Without poses the model is stock CogVideoX bit for bit.

Token layout inside an injector call (B batch, f latent frames, V video tokens per latent frame, D width)::

    hidden_states  [f0: V video | 150 entity] [f1: V video | 150 entity] ...      (B, f·(V+150), D)
    entity tokens  per frame: slot 0 tokens 0..49, slot 1 tokens 0..49, slot 2 tokens 0..49
                   = pose_fuse_layer(pose[slot, frame]) + entity_text[slot, token], or attn_null_feature for empty slots
    encoder        the empty prompt through norm1 (226 tokens)

The authors' processor re-orders queries and keys (not values) at exactly that sequence length; see
:class:`InjectorAttnProcessor`.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from diffusers import CogVideoXTransformer3DModel
from diffusers.models.attention import Attention
from diffusers.models.attention_processor import CogVideoXAttnProcessor2_0
from diffusers.models.embeddings import apply_rotary_emb
from diffusers.models.transformers.cogvideox_transformer_3d import CogVideoXBlock
from torch import nn

MAX_ENTITIES = 3  # hard-coded ``max_entity_num`` of the authors' block (spec §1.3.4)
ENTITY_TOKENS = 50  # T5 tokens kept per entity prompt
POSE_DIM = 12  # [R|t] column-major
INJECTOR_BLOCK_INTERVAL = 2  # the authors' CogVideoXBlock default; not a config field, so not stored in config.json
INJECTOR_KWARG = "trajmaster_injector"  # key under which the model hands InjectorInputs to its blocks


@dataclass
class InjectorInputs:
    """What every injector block needs, projected once per forward.

    pose_embeds: (B', n, f, 12) model dtype, n ≤ 3 entities, f latent frames (B' is 1 or B: broadcast over CFG).
    entity_tokens: (B', n, 50, D) ``text_proj`` of each entity prompt's T5 states, zero where the tokenizer mask is 0.
    empty_text: (1 or B, L, D) ``text_proj`` of the empty prompt's T5 states.
    """

    pose_embeds: torch.Tensor
    entity_tokens: torch.Tensor
    empty_text: torch.Tensor


class InjectorAttnProcessor:
    """CogVideoX joint attention plus the authors' token re-ordering quirk (spec §1.3.1), reproduced exactly.

    When the joint sequence (text + ``hidden_states``) is exactly text + ``latent_frames · (video + entity)`` tokens
    (19,726 for CogVideoX-5B at 480×720×49 with 226 text tokens) and RoPE is given, each latent frame's tokens are
    split into video and entity tokens, RoPE is applied to the video tokens only, and **queries and keys** are
    re-ordered to ``[text | all video (frame-major) | all entity]`` while **values keep the interleaved order**: key j
    and value j then belong to different tokens. The authors trained with this mismatch, so it stays. The output
    follows the query order, so the first ``latent_frames · video`` non-text outputs are the video tokens.

    At any other length this is plain :class:`CogVideoXAttnProcessor2_0`.
    """

    def __init__(self, latent_frames: int, video_tokens_per_frame: int, entity_tokens_per_frame: int):
        self.latent_frames = latent_frames
        self.video_tokens_per_frame = video_tokens_per_frame
        self.entity_tokens_per_frame = entity_tokens_per_frame
        self._plain = CogVideoXAttnProcessor2_0()

    def special_length(self, text_tokens: int) -> int:
        """The joint sequence length at which the re-ordering applies."""
        return text_tokens + self.latent_frames * (self.video_tokens_per_frame + self.entity_tokens_per_frame)

    def _grouped(self, x: torch.Tensor, text_tokens: int, rope: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """(B, heads, S, d) interleaved → [text | RoPE(video) frame-major | entity], same shape."""
        per_frame = x[:, :, text_tokens:].unflatten(2, (self.latent_frames, -1))
        video = apply_rotary_emb(per_frame[:, :, :, : self.video_tokens_per_frame].flatten(2, 3), rope)
        entity = per_frame[:, :, :, self.video_tokens_per_frame :].flatten(2, 3)
        return torch.cat([x[:, :, :text_tokens], video, entity], dim=2)

    def __call__(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        image_rotary_emb: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        text_tokens = encoder_hidden_states.size(1)
        joint_length = text_tokens + hidden_states.size(1)
        if image_rotary_emb is None or joint_length != self.special_length(text_tokens):
            return self._plain(attn, hidden_states, encoder_hidden_states, attention_mask, image_rotary_emb)
        if attention_mask is not None:
            raise ValueError("attention_mask: the injector attention takes no mask (the authors' has none)")

        joint = torch.cat([encoder_hidden_states, hidden_states], dim=1)
        batch = joint.size(0)
        query, key, value = (
            proj(joint).unflatten(-1, (attn.heads, -1)).transpose(1, 2) for proj in (attn.to_q, attn.to_k, attn.to_v)
        )
        if attn.norm_q is not None:
            query = attn.norm_q(query)
        if attn.norm_k is not None:
            key = attn.norm_k(key)
        query = self._grouped(query, text_tokens, image_rotary_emb)
        if not attn.is_cross_attention:
            key = self._grouped(key, text_tokens, image_rotary_emb)
        out = F.scaled_dot_product_attention(query, key, value, dropout_p=0.0, is_causal=False)
        out = out.transpose(1, 2).reshape(batch, joint_length, -1)
        out = attn.to_out[1](attn.to_out[0](out))
        return out[:, text_tokens:], out[:, :text_tokens]


class TrajMasterBlock(CogVideoXBlock):
    """A stock CogVideoX block, plus the object injector when ``with_injector`` (spec §1.2, block forward steps 1–3).

    Without :class:`InjectorInputs` in ``attention_kwargs`` (or without an injector) it is the stock block.
    """

    def __init__(
        self,
        *,
        dim: int,
        num_attention_heads: int,
        attention_head_dim: int,
        attention_bias: bool,
        with_injector: bool,
        injector_processor: InjectorAttnProcessor,
        **block_kwargs: Any,
    ):
        super().__init__(
            dim=dim, num_attention_heads=num_attention_heads, attention_head_dim=attention_head_dim,
            attention_bias=attention_bias, **block_kwargs,
        )
        self.has_injector = with_injector
        if with_injector:
            self.attn_injector = Attention(
                query_dim=dim, dim_head=attention_head_dim, heads=num_attention_heads, qk_norm="layer_norm",
                eps=1e-6, bias=attention_bias, out_bias=True, processor=injector_processor,
            )
            self.pose_fuse_layer = nn.Linear(POSE_DIM, dim)
            self.attn_null_feature = nn.Parameter(torch.zeros(dim))

    def forward(
        self,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        temb: torch.Tensor,
        image_rotary_emb: tuple[torch.Tensor, torch.Tensor] | None = None,
        attention_kwargs: dict[str, Any] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        attention_kwargs = dict(attention_kwargs or {})
        injector = attention_kwargs.pop(INJECTOR_KWARG, None)
        if injector is None or not self.has_injector:
            return super().forward(hidden_states, encoder_hidden_states, temb, image_rotary_emb, attention_kwargs)

        text_tokens = encoder_hidden_states.size(1)
        norm_hidden, norm_text, gate_msa, enc_gate_msa = self.norm1(hidden_states, encoder_hidden_states, temb)
        attn_hidden, attn_text = self.attn1(
            hidden_states=norm_hidden, encoder_hidden_states=norm_text, image_rotary_emb=image_rotary_emb,
            **attention_kwargs,
        )
        hidden_states = hidden_states + gate_msa * attn_hidden
        encoder_hidden_states = encoder_hidden_states + enc_gate_msa * attn_text

        hidden_states = hidden_states + self._inject(hidden_states, temb, image_rotary_emb, injector)

        norm_hidden, norm_text, gate_ff, enc_gate_ff = self.norm2(hidden_states, encoder_hidden_states, temb)
        ff_output = self.ff(torch.cat([norm_text, norm_hidden], dim=1))
        hidden_states = hidden_states + gate_ff * ff_output[:, text_tokens:]
        encoder_hidden_states = encoder_hidden_states + enc_gate_ff * ff_output[:, :text_tokens]
        return hidden_states, encoder_hidden_states

    def _inject(
        self,
        hidden_states: torch.Tensor,
        temb: torch.Tensor,
        image_rotary_emb: tuple[torch.Tensor, torch.Tensor] | None,
        injector: InjectorInputs,
    ) -> torch.Tensor:
        """The gated injector residual, (B, f·V, D). ``norm1`` runs again with the empty prompt as text stream."""
        norm_hidden, norm_empty, gate_msa, _ = self.norm1(hidden_states, injector.empty_text, temb)
        batch, visual_tokens, dim = norm_hidden.shape
        _, entities, frames, _ = injector.pose_embeds.shape

        slots = self.attn_null_feature.expand(batch, MAX_ENTITIES, ENTITY_TOKENS, frames, dim).clone()
        pose = self.pose_fuse_layer(injector.pose_embeds)  # (B', n, f, D)
        slots[:, :entities] = pose.unsqueeze(2) + injector.entity_tokens.unsqueeze(3)  # (B, n, 50, f, D)
        entity_seq = slots.permute(0, 3, 1, 2, 4).reshape(batch, frames, MAX_ENTITIES * ENTITY_TOKENS, dim)
        sequence = torch.cat([norm_hidden.view(batch, frames, -1, dim), entity_seq], dim=2).flatten(1, 2)

        out, _ = self.attn_injector(
            hidden_states=sequence, encoder_hidden_states=norm_empty, image_rotary_emb=image_rotary_emb
        )
        return gate_msa * out[:, :visual_tokens]


class TrajMasterTransformer3DModel(CogVideoXTransformer3DModel):
    """``CogVideoXTransformer3DModel`` with the authors' injectors in every second block.

    The config is the stock one (the authors' ``config.json`` is a plain CogVideoX-5B config), so ``from_pretrained``
    of their ``injector`` folder builds the injectors and fills them from the checkpoint. The injector attention is
    tied to the native sample size in the config (``sample_height × sample_width × sample_frames``): that is the only
    size at which the authors' re-ordering applies, and :meth:`forward` refuses poses at any other size.
    """

    # Same signature as the parent (ConfigMixin reads the init keys from it; a bare **kwargs would drop the config).
    @functools.wraps(CogVideoXTransformer3DModel.__init__)
    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        config = self.config
        patch = config.patch_size
        self.injector_latent_frames = (config.sample_frames - 1) // config.temporal_compression_ratio + 1
        self.injector_video_tokens = (config.sample_height // patch) * (config.sample_width // patch)
        processor = InjectorAttnProcessor(
            self.injector_latent_frames, self.injector_video_tokens, MAX_ENTITIES * ENTITY_TOKENS
        )
        block_kwargs = dict(
            dim=config.num_attention_heads * config.attention_head_dim,
            num_attention_heads=config.num_attention_heads,
            attention_head_dim=config.attention_head_dim,
            time_embed_dim=config.time_embed_dim,
            dropout=config.dropout,
            activation_fn=config.activation_fn,
            attention_bias=config.attention_bias,
            norm_elementwise_affine=config.norm_elementwise_affine,
            norm_eps=config.norm_eps,
        )
        # Swap the stock blocks one at a time (under from_pretrained they live on the meta device: no memory cost).
        for index in range(len(self.transformer_blocks)):
            self.transformer_blocks[index] = TrajMasterBlock(
                with_injector=index % INJECTOR_BLOCK_INTERVAL == 0, injector_processor=processor, **block_kwargs
            )

    @property
    def injector_blocks(self) -> list[int]:
        return [i for i, block in enumerate(self.transformer_blocks) if block.has_injector]

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
        *,
        pose_embeds: torch.Tensor | None = None,
        entity_embeds: torch.Tensor | None = None,
        entity_attention_mask: torch.Tensor | None = None,
        empty_text_embeds: torch.Tensor | None = None,
    ):
        """The stock forward; with ``pose_embeds`` the injector blocks also run the object injector.

        pose_embeds: (B', n, f, 12), n in 1..3, f = latent frames of ``hidden_states``; 12-vectors as produced by
            :mod:`trajplate.conditioning.trajmaster3d` (x right, y up, z forward, metres, ``[R|t]`` column-major).
        entity_embeds: (B', n, L ≥ 50, text_embed_dim) T5 last hidden states of each entity prompt.
        entity_attention_mask: (B', n, L) the tokenizer's attention mask (1 = token, 0 = padding).
        empty_text_embeds: (1, L', text_embed_dim) T5 states of the empty prompt.
        B' is 1 (broadcast over the CFG batch, as the authors do) or the batch of ``hidden_states``.

        Raises ValueError naming the argument when a shape is wrong or the latent size is not the native one.
        """
        if pose_embeds is not None:
            injector = self._injector_inputs(
                hidden_states, pose_embeds, entity_embeds, entity_attention_mask, empty_text_embeds
            )
            attention_kwargs = {**(attention_kwargs or {}), INJECTOR_KWARG: injector}
        return super().forward(
            hidden_states, encoder_hidden_states, timestep, timestep_cond=timestep_cond, ofs=ofs,
            image_rotary_emb=image_rotary_emb, attention_kwargs=attention_kwargs, return_dict=return_dict,
        )

    def _injector_inputs(
        self,
        hidden_states: torch.Tensor,
        pose_embeds: torch.Tensor,
        entity_embeds: torch.Tensor | None,
        entity_attention_mask: torch.Tensor | None,
        empty_text_embeds: torch.Tensor | None,
    ) -> InjectorInputs:
        _, frames, _, height, width = hidden_states.shape
        patch = self.config.patch_size
        video_tokens = (height // patch) * (width // patch)
        if (frames, video_tokens) != (self.injector_latent_frames, self.injector_video_tokens):
            raise ValueError(
                f"hidden_states: {frames} latent frames × {video_tokens} tokens per frame, but the object injector only "
                f"works at the native {self.injector_latent_frames} × {self.injector_video_tokens} (the authors' "
                "attention re-ordering is tied to that sequence length, spec §1.3.1); generate at the native size"
            )
        if pose_embeds.ndim != 4 or pose_embeds.shape[2:] != (frames, POSE_DIM):
            raise ValueError(f"pose_embeds: shape {tuple(pose_embeds.shape)}, expected (B, n, {frames}, {POSE_DIM})")
        entities = pose_embeds.shape[1]
        if not 1 <= entities <= MAX_ENTITIES:
            raise ValueError(f"pose_embeds: {entities} entities; 3DTrajMaster has {MAX_ENTITIES} entity slots")
        if entity_embeds is None or entity_attention_mask is None or empty_text_embeds is None:
            raise ValueError("entity_embeds, entity_attention_mask and empty_text_embeds are required with pose_embeds")
        if entity_embeds.ndim != 4 or entity_embeds.shape[1] != entities or entity_embeds.shape[2] < ENTITY_TOKENS:
            raise ValueError(
                f"entity_embeds: shape {tuple(entity_embeds.shape)}, expected (B, {entities}, L ≥ {ENTITY_TOKENS}, C)"
            )
        if entity_attention_mask.shape != entity_embeds.shape[:3]:
            raise ValueError(
                f"entity_attention_mask: shape {tuple(entity_attention_mask.shape)}, expected {tuple(entity_embeds.shape[:3])}"
            )
        text_proj = self.patch_embed.text_proj
        tokens = text_proj(entity_embeds.to(text_proj.weight.dtype))
        # Zeroing after the projection also removes text_proj's bias at padding positions, as the authors do.
        tokens = tokens.masked_fill(entity_attention_mask.unsqueeze(-1) < 1, 0.0)[:, :, :ENTITY_TOKENS]
        empty = text_proj(empty_text_embeds.to(text_proj.weight.dtype))
        return InjectorInputs(pose_embeds.to(tokens.dtype), tokens, empty)
