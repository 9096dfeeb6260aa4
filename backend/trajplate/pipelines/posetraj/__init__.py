"""PoseTraj (CVPR 2025): SVD img2vid (14 frames) + Traj-ControlNet, driven by the shot's exact drag tracks drawn as
the authors' trajectory maps. No public checkpoint: ``trajplate posetraj-train`` makes one.
specs/pipelines.md §3; docs/pipelines/posetraj.md."""

from .adapter import PoseTraj, PoseTrajInputs, PoseTrajOptions

PIPELINE = PoseTraj

__all__ = ["PIPELINE", "PoseTraj", "PoseTrajInputs", "PoseTrajOptions"]
