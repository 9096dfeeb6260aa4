"""TrajectoryCrafter (ICCV 2025): CogVideoX-Fun-V1.1-5B-InP + Ref-DiT, re-shooting a plate along a redirect camera.

See ``docs/pipelines/trajectorycrafter.md`` and specs/pipelines.md §4.
"""

from .adapter import TrajectoryCrafter

PIPELINE = TrajectoryCrafter

__all__ = ["PIPELINE", "TrajectoryCrafter"]
