"""The ``attn_trajectory`` processor: attention along pixel trajectories (specs/pipelines.md §2.2).

Input of a temporal transformer block: ``(B·H·W, F, C)`` features of one scale, rows in (batch, y, x) order. Per call:
1. draw ``M = 2·H·W`` of the ``N`` trajectories (``torch.randperm`` from the job's generator — the authors use the
   global CPU RNG; a seeded generator keeps the same stream structure without touching global state);
2. scale their (x, y) from the trajectory frame (1024×576 for the authors' files) to this feature map (x·W/W₀,
   y·H/H₀), truncate to int, clamp to the map, and gather the features along each trajectory, zeroing invalid frames;
3. attend. The authors' head reshape keeps the pre-gather batch size B·H·W, so every attention sequence is **two
   consecutive sampled trajectories concatenated (2F tokens)**; the adapter was trained that way and we keep it;
4. project out and scatter back: each valid (frame, position) gets the mean of the outputs of the trajectories that
   land there; positions no trajectory hits get 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from diffusers.models.attention_processor import Attention


@dataclass
class TrajectoryControl:
    """Trajectories that drive every ``attn_trajectory`` module during one pipeline call.

    coords: (T, N, 2) float tensor, (x, y) pixels in a ``size`` = (W₀, H₀) frame, pixel-corner convention.
    valid: (T, N) bool tensor. generator: draws the per-call sub-sampling (None: the global RNG, as the authors).
    Both tensors should already be on the UNet's device.
    """

    coords: torch.Tensor
    valid: torch.Tensor
    size: tuple[int, int]
    generator: torch.Generator | None = None

    def sample(self, height: int, width: int, count: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw ``count`` trajectories for an ``height`` × ``width`` feature map.

        Returns ``(index, weight)``, both (count, T): the flat position ``y·W + x`` on the map per frame (int64) and
        the validity as 0/1 (float32). Raises ValueError when fewer than ``count`` trajectories were given.
        """
        total = self.coords.shape[1]
        if total < count:
            raise ValueError(f"trajectory attention at {height}x{width} needs at least {count} trajectories "
                             f"(2·H·W); got {total}")
        device = self.generator.device if self.generator is not None else torch.device("cpu")
        pick = torch.randperm(total, generator=self.generator, device=device)[:count].to(self.coords.device)
        coords = self.coords[:, pick].transpose(0, 1)  # (count, T, 2)
        x = (coords[..., 0] * (width / self.size[0])).long().clamp(0, width - 1)
        y = (coords[..., 1] * (height / self.size[1])).long().clamp(0, height - 1)
        return y * width + x, self.valid[:, pick].transpose(0, 1).float()


def gather_along(features: torch.Tensor, index: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """(B, H·W, F, C) features → (B, M, F, C) along trajectories ``index`` (M, F), multiplied by ``weight`` (M, F)."""
    batch, positions, frames, channels = features.shape
    flat = (index * frames + torch.arange(frames, device=index.device)).reshape(-1)
    gathered = features.reshape(batch, positions * frames, channels).index_select(1, flat)
    return gathered.view(batch, *index.shape, channels) * weight[None, ..., None].to(features.dtype)


def scatter_mean(values: torch.Tensor, index: torch.Tensor, weight: torch.Tensor, positions: int) -> torch.Tensor:
    """Inverse of :func:`gather_along`: (B, M, F, C) → (B, positions, F, C), the weighted mean per (position, frame).

    Only entries with weight 1 count; positions no valid trajectory hits are 0.
    """
    batch, _, frames, channels = values.shape
    flat = (index * frames + torch.arange(frames, device=index.device)).reshape(-1)
    weight = weight.reshape(-1)
    total = values.new_zeros(batch, positions * frames, channels)
    total.index_add_(1, flat, values.reshape(batch, -1, channels) * weight[None, :, None].to(values.dtype))
    hits = weight.new_zeros(positions * frames).index_add_(0, flat, weight)
    return (total / hits.clamp(min=1.0)[None, :, None].to(values.dtype)).view(batch, positions, frames, channels)


class TrajectoryAttnProcessor:
    """Processor of the ``attn_trajectory`` modules (the authors' ``MotionVectorAttnProcessor2_0``).

    ``height``/``width`` (the feature map) and ``control`` are explicit parameters because diffusers 0.42's
    ``Attention.forward`` drops keyword arguments a processor does not declare.
    """

    def __call__(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        height: int | None = None,
        width: int | None = None,
        control: TrajectoryControl | None = None,
    ) -> torch.Tensor:
        if control is None or height is None or width is None:
            raise ValueError("attn_trajectory needs height, width and a TrajectoryControl")
        rows, frames, channels = hidden_states.shape
        positions = height * width
        batch = rows // positions
        if control.coords.shape[0] != frames:
            raise ValueError(f"trajectories have {control.coords.shape[0]} frames; the UNet runs {frames}")
        index, weight = control.sample(height, width, 2 * positions)
        features = gather_along(hidden_states.view(batch, positions, frames, channels), index, weight)
        # The authors' pairing: sequences of 2F tokens = two consecutive sampled trajectories.
        sequences = features.reshape(rows, 2 * frames, channels)
        query, key, value = attn.to_q(sequences), attn.to_k(sequences), attn.to_v(sequences)
        head_dim = key.shape[-1] // attn.heads
        query, key, value = (t.view(rows, -1, attn.heads, head_dim).transpose(1, 2) for t in (query, key, value))
        out = F.scaled_dot_product_attention(query, key, value)
        out = out.transpose(1, 2).reshape(rows, 2 * frames, attn.heads * head_dim).to(query.dtype)
        out = attn.to_out[1](attn.to_out[0](out))
        out = scatter_mean(out.view(batch, 2 * positions, frames, -1), index, weight, positions)
        return out.reshape(rows, frames, -1)
