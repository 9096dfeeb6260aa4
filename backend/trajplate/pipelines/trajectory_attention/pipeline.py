"""``StableVideoDiffusionPipeline`` driven by trajectories (the authors' ``My_SVD`` without NVS-Solver)."""

from __future__ import annotations

from diffusers import StableVideoDiffusionPipeline

from .attention import TrajectoryControl
from .unet import TrajectoryAttentionUNet


class TrajectoryAttentionSVDPipeline(StableVideoDiffusionPipeline):
    """SVD img2vid whose UNet is a :class:`TrajectoryAttentionUNet`.

    Everything else is stock diffusers 0.42: CLIP image embedding, noise augmentation, per-frame linear CFG
    (``min_guidance_scale`` → ``max_guidance_scale``), Euler (Karras, v-prediction), chunked temporal VAE decode.
    The authors' NVS-Solver guidance (video camera control only) is not reproduced: the shot's tracks are exact, so
    no warped frames are needed to pull the sample toward them.
    """

    unet: TrajectoryAttentionUNet

    def __call__(self, image, *args, trajectories: TrajectoryControl | None = None, authors_parity: bool = False,
                 **kwargs):
        """As ``StableVideoDiffusionPipeline.__call__``, plus ``trajectories`` (None: the branch is off) and
        ``authors_parity`` (the authors' temporal-context order, see :mod:`.unet`). ``num_frames`` must equal the
        trajectories' frame count; the random sub-sampling draws from ``trajectories.generator``."""
        with self.unet.trajectory_control(trajectories, authors_parity=authors_parity):
            return super().__call__(image, *args, **kwargs)
