"""Job parameters shared by the API, the CLI and every pipeline.

Pipeline-specific settings go in ``options`` and are validated by that pipeline's
``Options`` model (extra keys forbidden), so a typo gets a 422 naming the valid keys.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

MemoryMode = Literal["resident", "model_offload", "group_offload", "sequential_offload"]
MEMORY_MODES: tuple[str, ...] = ("resident", "model_offload", "group_offload", "sequential_offload")


class GenerateParams(BaseModel):
    """What a job asks for. ``None`` means: take the preset's default (or the shot's prompt)."""

    model_config = ConfigDict(extra="forbid")

    pipeline: str
    prompt: str | None = Field(None, description="scene prompt; default: the shot's scene_prompt")
    negative_prompt: str | None = None
    seed: int = Field(0, ge=0, le=2**63 - 1)
    steps: int | None = Field(None, ge=1, le=1000)
    guidance: float | None = Field(None, ge=0.0, le=50.0)
    strength: float | None = Field(None, ge=0.0, le=4.0, description="ControlNet/adapter weight where the pipeline has one")
    variant: str | None = None
    tier: str | None = Field(None, description="quality tier from the preset, e.g. draft or final")
    memory_mode: MemoryMode = "resident"
    options: dict[str, Any] = Field(default_factory=dict, description="pipeline-specific options")
    score: bool = Field(False, description="compute the adherence score of the result")
