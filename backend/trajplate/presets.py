"""Pipeline presets: one TOML file per pipeline under ``presets/pipelines/``.

A preset names the weights (base + adapter repo ids, pinned revisions, allow patterns),
the native output (size, frames, fps), the sampling defaults, the licence and the
quality tiers. The registry, the CLI, the API and the add-on all read presets from here.

Errors: :class:`PresetError` naming the file and field.
"""

from __future__ import annotations

import os
import tomllib
from functools import cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

PIPELINE_IDS = ("3dtrajmaster", "trajectory-attention", "posetraj", "trajectorycrafter", "magicmotion")


class PresetError(ValueError):
    """A preset file is missing or invalid; the message names the file and field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class WeightsRef(_Strict):
    """A Hugging Face repo pinned to a revision (a commit hash where known)."""

    repo_id: str
    revision: str = "main"
    allow_patterns: list[str] | None = None
    subfolder: str | None = None
    local_only: bool = False  # no public repo (e.g. PoseTraj ControlNet): a local folder path is expected


class Licence(_Strict):
    base: str
    adapter: str
    research_only: bool = False
    notes: str = ""


class Native(_Strict):
    """The size the authors trained at: width × height pixels, frames, fps of the output video."""

    width: int = Field(gt=0)
    height: int = Field(gt=0)
    frames: int = Field(gt=0)
    fps: float = Field(gt=0)


class Defaults(_Strict):
    steps: int = Field(gt=0)
    guidance: float = Field(ge=0)
    guidance_max: float | None = None  # SVD-style linearly increasing guidance (min → max)
    scheduler: str
    strength: float | None = None  # ControlNet / adapter weight where the pipeline has one
    negative_prompt: str = ""


class Tier(_Strict):
    steps: int = Field(gt=0)
    description: str = ""


class Variant(_Strict):
    """A named alternative adapter checkpoint (e.g. MagicMotion's three stages)."""

    description: str = ""
    files: list[str] = []
    params: dict[str, str | int | float | bool] = {}


class Preset(_Strict):
    id: str
    name: str
    description: str
    paper: str = ""
    base: WeightsRef
    adapter: WeightsRef
    extra_weights: dict[str, WeightsRef] = {}
    native: Native
    defaults: Defaults
    licence: Licence
    tiers: dict[str, Tier] = {}
    variants: dict[str, Variant] = {}
    default_variant: str | None = None
    requirements: list[str] = []  # human-readable check list shown in the add-on
    time_map: Literal["sample", "retime"] = "sample"
    public_weights: bool = True


def presets_dir() -> Path:
    """``$TRAJPLATE_PRESETS`` or the repository's ``presets/`` folder."""
    env = os.environ.get("TRAJPLATE_PRESETS")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / "presets"


def load_preset_file(path: Path) -> Preset:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise PresetError(f"preset file {path} does not exist") from exc
    except tomllib.TOMLDecodeError as exc:
        raise PresetError(f"{path.name}: invalid TOML: {exc}") from exc
    try:
        preset = Preset.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        raise PresetError(f"{path.name}: field '{field}': {first['msg']}") from exc
    if preset.id != path.stem:
        raise PresetError(f"{path.name}: field 'id' is {preset.id!r}; it must equal the file name {path.stem!r}")
    return preset


@cache
def _load_all(root: str) -> dict[str, Preset]:
    folder = Path(root) / "pipelines"
    return {p.stem: load_preset_file(p) for p in sorted(folder.glob("*.toml"))}


def load_presets() -> dict[str, Preset]:
    """All pipeline presets by id (cached per presets folder)."""
    return dict(_load_all(str(presets_dir())))


def get_preset(pipeline_id: str) -> Preset:
    presets = load_presets()
    if pipeline_id not in presets:
        raise PresetError(f"unknown pipeline {pipeline_id!r}; valid: {', '.join(sorted(presets)) or '(none installed)'}")
    return presets[pipeline_id]
