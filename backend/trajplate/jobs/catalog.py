"""Every pipeline the service knows: the presets in ``presets/pipelines`` plus plugin pipelines' own presets.

A plugin pipeline (see :mod:`trajplate.pipelines.registry`) brings its preset as a class attribute ``preset``:
a :class:`~trajplate.presets.Preset` or the path of a preset TOML file. Built-in presets win on an id clash.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from ..pipelines.base import TrajPipeline
from ..pipelines.registry import is_implemented, pipeline_class, plugins
from ..presets import Preset, PresetError, load_preset_file, load_presets


def all_presets() -> dict[str, Preset]:
    """Presets by pipeline id (built-in first, then plugins that carry one). Raises PresetError for a bad file."""
    found = load_presets()
    for pipeline_id in plugins():
        if pipeline_id in found:
            continue
        preset = getattr(pipeline_class(pipeline_id), "preset", None)
        if isinstance(preset, (str, Path)):
            preset = load_preset_file(Path(preset))
        if isinstance(preset, Preset):
            found[pipeline_id] = preset
    return found


def preset_for(pipeline_id: str) -> Preset:
    """The preset of ``pipeline_id``. Raises PresetError listing the valid ids."""
    presets = all_presets()
    if pipeline_id not in presets:
        raise PresetError(f"unknown pipeline {pipeline_id!r}; valid: {', '.join(sorted(presets)) or '(none installed)'}")
    return presets[pipeline_id]


@cache
def installed_class(pipeline_id: str) -> tuple[type[TrajPipeline] | None, str | None]:
    """(adapter class, None) when ``pipeline_id`` imports; (None, why not) when it is absent or broken.

    Cached for the life of the process (a fixed pipeline package needs a server restart, like any code change).
    """
    if not is_implemented(pipeline_id):
        return None, "not installed (no pipeline package)"
    try:
        cls = pipeline_class(pipeline_id)
    except Exception as exc:  # noqa: BLE001 - a broken pipeline package must not take the service down
        return None, f"fails to import: {type(exc).__name__}: {exc}"
    if not (isinstance(cls, type) and issubclass(cls, TrajPipeline)):
        return None, f"its PIPELINE is {cls!r}, not a TrajPipeline subclass"
    return cls, None
