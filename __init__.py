"""TrajPlate Blender extension entry point: everything lives in ``addon/``."""

from .addon import register, unregister  # noqa: F401
