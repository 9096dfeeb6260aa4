"""SVD-XT's UNet with the Trajectory Attention branch (specs/pipelines.md §2.1–2.2, §9).

Every ``TemporalBasicTransformerBlock`` gains ``attn_trajectory`` (a plain diffusers ``Attention`` with the heads of
``attn1``), fed the same normalised tensor as the temporal self-attention ``attn1``; the two outputs are summed (no
gate, no scale). Parameter names match the authors' fork (``...temporal_transformer_blocks.0.attn_trajectory.to_q``),
so SVD-XT's own weights load unchanged and the adapter lands on the branch.

The trajectories reach the branch through :meth:`TrajectoryAttentionUNet.trajectory_control`, a context manager,
because the stock SpatioTemporal blocks and ``StableVideoDiffusionPipeline`` call the UNet and its transformers with
fixed arguments; outside it (or with ``None``) the branch is skipped, which is the authors' ``use_traj=False``.

Temporal context order (§9): the authors' code (pre-0.28 diffusers) hands temporal row r the image embedding of batch
``r % B``, so with CFG (B = 2) conditional and unconditional contexts alternate over pixels; diffusers ≥ 0.28 gives row
r its own batch's. Both SVD-XT and the adapter were trained at B = 1, where the two agree, so the default is diffusers'
(correct) order; ``authors_parity=True`` reproduces the published samples exactly.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from diffusers import UNetSpatioTemporalConditionModel
from diffusers.models.attention import TemporalBasicTransformerBlock, _chunked_feed_forward
from diffusers.models.attention_processor import Attention
from diffusers.models.transformers.transformer_temporal import (
    TransformerSpatioTemporalModel,
    TransformerTemporalModelOutput,
)

from .attention import TrajectoryAttnProcessor, TrajectoryControl

BRANCH = "attn_trajectory"


class TrajectoryState:
    """What one UNet call shares with all its transformers: the trajectories and the context-order switch."""

    def __init__(self) -> None:
        self.control: TrajectoryControl | None = None
        self.authors_parity = False


class TrajectoryTemporalBlock(TemporalBasicTransformerBlock):
    """``TemporalBasicTransformerBlock`` + ``attn_trajectory`` summed with ``attn1``."""

    def __init__(self, dim: int, time_mix_inner_dim: int, num_attention_heads: int, attention_head_dim: int,
                 cross_attention_dim: int | None = None):
        super().__init__(dim, time_mix_inner_dim, num_attention_heads, attention_head_dim, cross_attention_dim)
        self.attn_trajectory = Attention(query_dim=time_mix_inner_dim, heads=num_attention_heads,
                                         dim_head=attention_head_dim, processor=TrajectoryAttnProcessor())

    def forward(self, hidden_states: torch.Tensor, num_frames: int, encoder_hidden_states: torch.Tensor | None = None,
                *, height: int = 0, width: int = 0, control: TrajectoryControl | None = None) -> torch.Tensor:
        """As the stock block; with ``control``, (B·F, H·W, C) features of an ``height`` × ``width`` map."""
        batch_frames, seq_length, channels = hidden_states.shape
        batch_size = batch_frames // num_frames
        hidden_states = hidden_states[None, :].reshape(batch_size, num_frames, seq_length, channels)
        hidden_states = hidden_states.permute(0, 2, 1, 3).reshape(batch_size * seq_length, num_frames, channels)

        residual = hidden_states
        hidden_states = self.norm_in(hidden_states)
        if self._chunk_size is not None:
            hidden_states = _chunked_feed_forward(self.ff_in, hidden_states, self._chunk_dim, self._chunk_size)
        else:
            hidden_states = self.ff_in(hidden_states)
        if self.is_res:
            hidden_states = hidden_states + residual

        norm_hidden_states = self.norm1(hidden_states)
        attn_output = self.attn1(norm_hidden_states, encoder_hidden_states=None)
        if control is not None:
            attn_output = attn_output + self.attn_trajectory(norm_hidden_states, height=height, width=width,
                                                             control=control)
        hidden_states = attn_output + hidden_states

        if self.attn2 is not None:
            norm_hidden_states = self.norm2(hidden_states)
            hidden_states = self.attn2(norm_hidden_states, encoder_hidden_states=encoder_hidden_states) + hidden_states

        norm_hidden_states = self.norm3(hidden_states)
        if self._chunk_size is not None:
            ff_output = _chunked_feed_forward(self.ff, norm_hidden_states, self._chunk_dim, self._chunk_size)
        else:
            ff_output = self.ff(norm_hidden_states)
        hidden_states = ff_output + hidden_states if self.is_res else ff_output

        hidden_states = hidden_states[None, :].reshape(batch_size, seq_length, num_frames, channels)
        return hidden_states.permute(0, 2, 1, 3).reshape(batch_size * num_frames, seq_length, channels)


class TrajectorySpatioTemporalTransformer(TransformerSpatioTemporalModel):
    """``TransformerSpatioTemporalModel`` whose temporal blocks are :class:`TrajectoryTemporalBlock`.

    It passes the feature-map size and the shared trajectories down, and builds the temporal cross-attention context
    in diffusers' order or, with ``state.authors_parity``, in the authors' (module docstring).
    """

    def __init__(self, state: TrajectoryState, num_attention_heads: int, attention_head_dim: int, in_channels: int,
                 num_layers: int, cross_attention_dim: int | None):
        super().__init__(num_attention_heads, attention_head_dim, in_channels=in_channels, num_layers=num_layers,
                         cross_attention_dim=cross_attention_dim)
        self.state = state
        self.temporal_transformer_blocks = torch.nn.ModuleList([
            TrajectoryTemporalBlock(self.inner_dim, self.inner_dim, num_attention_heads, attention_head_dim,
                                    cross_attention_dim=cross_attention_dim)
            for _ in range(num_layers)
        ])

    @classmethod
    def like(cls, stock: TransformerSpatioTemporalModel, state: TrajectoryState) -> TrajectorySpatioTemporalTransformer:
        """A new (uninitialised where the caller's init context says so) transformer with ``stock``'s shape."""
        attn2 = stock.temporal_transformer_blocks[0].attn2
        return cls(state, stock.num_attention_heads, stock.attention_head_dim, stock.in_channels,
                   len(stock.temporal_transformer_blocks), None if attn2 is None else attn2.cross_attention_dim)

    def forward(self, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor | None = None,
                image_only_indicator: torch.Tensor | None = None, return_dict: bool = True):
        """As the stock transformer (hidden_states (B·F, C, H, W), encoder_hidden_states (B·F, 1, D))."""
        batch_frames, _, height, width = hidden_states.shape
        num_frames = image_only_indicator.shape[-1]
        batch_size = batch_frames // num_frames

        context = encoder_hidden_states
        first = context[None, :].reshape(batch_size, num_frames, -1, context.shape[-1])[:, 0]
        if self.state.authors_parity:  # rows (y, x, batch): row r gets batch r % B
            time_context = first[None].broadcast_to(height * width, *first.shape)
        else:  # rows (batch, y, x): row r gets batch r // (H·W)
            time_context = first[:, None].broadcast_to(batch_size, height * width, *first.shape[1:])
        time_context = time_context.reshape(batch_size * height * width, -1, context.shape[-1])

        residual = hidden_states
        hidden_states = self.norm(hidden_states)
        inner_dim = hidden_states.shape[1]
        hidden_states = hidden_states.permute(0, 2, 3, 1).reshape(batch_frames, height * width, inner_dim)
        hidden_states = self.proj_in(hidden_states)

        frame_ids = torch.arange(num_frames, device=hidden_states.device).repeat(batch_size, 1).reshape(-1)
        emb = self.time_pos_embed(self.time_proj(frame_ids).to(dtype=hidden_states.dtype))[:, None, :]

        control = self.state.control
        for block, temporal_block in zip(self.transformer_blocks, self.temporal_transformer_blocks, strict=True):
            hidden_states = block(hidden_states, encoder_hidden_states=encoder_hidden_states)
            hidden_states_mix = temporal_block(hidden_states + emb, num_frames=num_frames,
                                               encoder_hidden_states=time_context, height=height, width=width,
                                               control=control)
            hidden_states = self.time_mixer(x_spatial=hidden_states, x_temporal=hidden_states_mix,
                                            image_only_indicator=image_only_indicator)

        hidden_states = self.proj_out(hidden_states)
        hidden_states = hidden_states.reshape(batch_frames, height, width, inner_dim).permute(0, 3, 1, 2).contiguous()
        output = hidden_states + residual
        return TransformerTemporalModelOutput(sample=output) if return_dict else (output,)


class TrajectoryAttentionUNet(UNetSpatioTemporalConditionModel):
    """``UNetSpatioTemporalConditionModel`` with ``attn_trajectory`` in all its temporal blocks (16 for SVD-XT).

    Same config (so ``from_pretrained`` reads SVD-XT's ``unet/`` folder); the branch weights come from the adapter.
    """

    def __init__(
        self,
        sample_size: int | None = None,
        in_channels: int = 8,
        out_channels: int = 4,
        down_block_types: tuple[str, ...] = ("CrossAttnDownBlockSpatioTemporal", "CrossAttnDownBlockSpatioTemporal",
                                             "CrossAttnDownBlockSpatioTemporal", "DownBlockSpatioTemporal"),
        up_block_types: tuple[str, ...] = ("UpBlockSpatioTemporal", "CrossAttnUpBlockSpatioTemporal",
                                           "CrossAttnUpBlockSpatioTemporal", "CrossAttnUpBlockSpatioTemporal"),
        block_out_channels: tuple[int, ...] = (320, 640, 1280, 1280),
        addition_time_embed_dim: int = 256,
        projection_class_embeddings_input_dim: int = 768,
        layers_per_block: int | tuple[int] = 2,
        cross_attention_dim: int | tuple[int] = 1024,
        transformer_layers_per_block: int | tuple[int, tuple[tuple]] = 1,
        num_attention_heads: int | tuple[int, ...] = (5, 10, 20, 20),
        num_frames: int = 25,
    ):
        super().__init__(
            sample_size=sample_size, in_channels=in_channels, out_channels=out_channels,
            down_block_types=down_block_types, up_block_types=up_block_types, block_out_channels=block_out_channels,
            addition_time_embed_dim=addition_time_embed_dim,
            projection_class_embeddings_input_dim=projection_class_embeddings_input_dim,
            layers_per_block=layers_per_block, cross_attention_dim=cross_attention_dim,
            transformer_layers_per_block=transformer_layers_per_block, num_attention_heads=num_attention_heads,
            num_frames=num_frames,
        )
        self.trajectory_state = TrajectoryState()
        # Swap the stock transformers in place: registration order (down → up → mid, as the authors') is unchanged.
        for block in (*self.down_blocks, *self.up_blocks, self.mid_block):
            attentions = getattr(block, "attentions", None)
            for i, stock in enumerate(attentions or ()):
                attentions[i] = TrajectorySpatioTemporalTransformer.like(stock, self.trajectory_state)

    def branch_names(self) -> list[str]:
        """Module names of the ``attn_trajectory`` branches in registration (= the authors' checkpoint) order."""
        return [name for name, module in self.named_modules() if name.endswith(f".{BRANCH}")]

    @contextmanager
    def trajectory_control(self, control: TrajectoryControl | None, *, authors_parity: bool = False) -> Iterator[None]:
        """Drive the branch with ``control`` for every forward inside the ``with`` block (None: branch off)."""
        previous = (self.trajectory_state.control, self.trajectory_state.authors_parity)
        self.trajectory_state.control, self.trajectory_state.authors_parity = control, authors_parity
        try:
            yield
        finally:
            self.trajectory_state.control, self.trajectory_state.authors_parity = previous

    def set_attn_processor(self, processor) -> None:
        """diffusers' helper, keeping the trajectory processor on the branches (it is not a plain attention)."""
        super().set_attn_processor(processor)
        for name in self.branch_names():
            self.get_submodule(name).set_processor(TrajectoryAttnProcessor())
