"""The sampling step the CogVideoX-based pipelines share (MagicMotion, 3DTrajMaster, TrajectoryCrafter).

Each of them runs diffusers' CogVideoX denoising loop with its own transformer inputs; after the transformer, the
step is the same: classifier-free guidance (CFG) on a ``[uncond, cond]`` batch, with CogVideoX's optional cosine
guidance ramp, then the scheduler step (``CogVideoXDPMScheduler`` also takes the previous x0 prediction and the
previous timestep). Same maths as ``diffusers.CogVideoXPipeline.__call__``.
"""

from __future__ import annotations

import math

import torch
from diffusers import CogVideoXDPMScheduler


def guidance_at(guidance_scale: float, t: torch.Tensor, num_inference_steps: int, dynamic: bool) -> float:
    """CFG scale at timestep ``t``: constant, or CogVideoX's dynamic ramp ``1 + s·(1 − cos(π·((N − t)/N)^5))/2``."""
    if not dynamic:
        return guidance_scale
    return 1 + guidance_scale * (1 - math.cos(math.pi * ((num_inference_steps - t.item()) / num_inference_steps) ** 5.0)) / 2


def guided_step(
    scheduler, noise_pred: torch.Tensor, latents: torch.Tensor, old_pred: torch.Tensor | None, timesteps, i: int,
    *, guidance: float, do_cfg: bool, extra_step_kwargs: dict,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """CFG on ``noise_pred`` ((2B, ...) as [uncond, cond] when ``do_cfg``), then step ``i`` of ``scheduler`` over
    ``timesteps``. Returns ``(latents, old_pred)``; ``old_pred`` is the DPM scheduler's x0 prediction to pass to the
    next step (unchanged for other schedulers)."""
    if do_cfg:
        uncond, cond = noise_pred.chunk(2)
        noise_pred = uncond + guidance * (cond - uncond)
    t = timesteps[i]
    if isinstance(scheduler, CogVideoXDPMScheduler):
        return scheduler.step(noise_pred, old_pred, t, timesteps[i - 1] if i > 0 else None, latents,
                              **extra_step_kwargs, return_dict=False)
    return scheduler.step(noise_pred, t, latents, **extra_step_kwargs, return_dict=False)[0], old_pred
