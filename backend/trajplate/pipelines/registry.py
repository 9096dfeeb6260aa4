"""Pipeline id -> adapter class, imported lazily (torch/diffusers load only when a pipeline is used)."""

from __future__ import annotations

import importlib

from .base import TrajPipeline

# Pipeline ids are the DESIGN's (CLI, API, preset names); package names must be identifiers.
MODULES: dict[str, str] = {
    "3dtrajmaster": "trajmaster3d",
    "trajectory-attention": "trajectory_attention",
    "posetraj": "posetraj",
    "trajectorycrafter": "trajectorycrafter",
    "magicmotion": "magicmotion",
}


class UnknownPipeline(KeyError):
    pass


def is_implemented(pipeline_id: str) -> bool:
    if pipeline_id not in MODULES:
        return False
    return importlib.util.find_spec(f"{__package__}.{MODULES[pipeline_id]}") is not None


def pipeline_class(pipeline_id: str) -> type[TrajPipeline]:
    """The adapter class of ``pipeline_id``. Raises :class:`UnknownPipeline` listing the valid ids."""
    if pipeline_id not in MODULES:
        raise UnknownPipeline(f"unknown pipeline {pipeline_id!r}; valid: {', '.join(MODULES)}")
    module = importlib.import_module(f"{__package__}.{MODULES[pipeline_id]}")
    return module.PIPELINE
