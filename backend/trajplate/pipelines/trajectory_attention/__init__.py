"""Trajectory Attention (ICLR 2025): SVD-XT + an ``attn_trajectory`` branch beside every temporal attention,
driven by the shot's exact pixel trajectories. specs/pipelines.md §2; docs/pipelines/trajectory_attention.md."""

from .adapter import TrajectoryAttention, TrajectoryAttentionInputs, TrajectoryAttentionOptions

PIPELINE = TrajectoryAttention

__all__ = ["PIPELINE", "TrajectoryAttention", "TrajectoryAttentionInputs", "TrajectoryAttentionOptions"]
