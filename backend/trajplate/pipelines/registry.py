"""Pipeline id -> adapter class, imported lazily (torch/diffusers load only when a pipeline is used).

Third-party pipelines plug in without editing this file: an entry point in the group ``trajplate.pipelines``
(name = pipeline id, value = ``package.module:Class``) or ``$TRAJPLATE_PLUGINS="id=package.module:Class,..."``.
"""

from __future__ import annotations

import importlib
import os
from importlib.metadata import entry_points

from .base import TrajPipeline

# Pipeline ids are the DESIGN's (CLI, API, preset names); package names must be identifiers.
MODULES: dict[str, str] = {
    "3dtrajmaster": "trajmaster3d",
    "trajectory-attention": "trajectory_attention",
    "posetraj": "posetraj",
    "trajectorycrafter": "trajectorycrafter",
    "magicmotion": "magicmotion",
}


PLUGIN_GROUP = "trajplate.pipelines"
PLUGINS_ENV = "TRAJPLATE_PLUGINS"


class UnknownPipeline(KeyError):
    pass


def plugins() -> dict[str, str]:
    """Plugin pipelines, id -> ``module:Class``, from entry points and ``$TRAJPLATE_PLUGINS`` (the latter wins)."""
    found = {ep.name: ep.value for ep in entry_points(group=PLUGIN_GROUP)}
    for item in filter(None, (s.strip() for s in os.environ.get(PLUGINS_ENV, "").split(","))):
        pipeline_id, sep, target = item.partition("=")
        if not sep or ":" not in target:
            raise UnknownPipeline(f"{PLUGINS_ENV}: {item!r} must look like 'id=package.module:Class'")
        found[pipeline_id.strip()] = target.strip()
    return found


def is_implemented(pipeline_id: str) -> bool:
    if pipeline_id in plugins():
        return True
    if pipeline_id not in MODULES:
        return False
    return importlib.util.find_spec(f"{__package__}.{MODULES[pipeline_id]}") is not None


def pipeline_class(pipeline_id: str) -> type[TrajPipeline]:
    """The adapter class of ``pipeline_id``. Raises :class:`UnknownPipeline` listing the valid ids."""
    if pipeline_id not in MODULES:
        extra = plugins()
        if pipeline_id in extra:
            module_name, _, attr = extra[pipeline_id].partition(":")
            return getattr(importlib.import_module(module_name), attr)
        raise UnknownPipeline(f"unknown pipeline {pipeline_id!r}; valid: {', '.join([*MODULES, *extra])}")
    module = importlib.import_module(f"{__package__}.{MODULES[pipeline_id]}")
    return module.PIPELINE
