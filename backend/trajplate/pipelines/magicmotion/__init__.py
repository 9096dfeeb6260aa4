"""MagicMotion (ICCV 2025): CogVideoX-5B-I2V + trajectory ControlNet, driven by the shot's masks and boxes.

See ``docs/pipelines/magicmotion.md`` and specs/pipelines.md §5.
"""

from .adapter import MagicMotion

PIPELINE = MagicMotion

__all__ = ["PIPELINE", "MagicMotion"]
