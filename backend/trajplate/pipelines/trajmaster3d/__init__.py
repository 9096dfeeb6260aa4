"""3DTrajMaster (ICLR 2025) on diffusers 0.42: per-entity 6-DoF paths and prompts drive CogVideoX-5B.

Modules: ``transformer`` (the object injector on the CogVideoX transformer), ``pipeline`` (annealed sampling),
``loading`` (the authors' weight layouts, strict key checks, tiny weights), ``trajpipeline`` (TrajPlate's interface).
Conditioning lives in :mod:`trajplate.conditioning.trajmaster3d`.
"""

from .trajpipeline import TrajMaster3D

PIPELINE = TrajMaster3D

__all__ = ["PIPELINE", "TrajMaster3D"]
