"""Scene settings of the artist's loop: ``scene.trajplate`` (saved with the .blend).

The pipeline is stored by id (a string), not as an enum index, so a .blend keeps its choice whatever list a
backend reports. Per-pipeline defaults (steps, CFG, strength) come from the backend's ``GET /v1/pipelines``
(the presets) and are filled in when the pipeline is picked. The redirect camera and the source take are used only
by pipelines that say they take them (``target_w2c`` among their options, ``source_video`` among their input files).
"""

from __future__ import annotations

import json

import bpy
from bpy.props import BoolProperty, EnumProperty, FloatProperty, IntProperty, PointerProperty, StringProperty

MEMORY_MODES = (
    ("resident", "Resident", "Keep every model on the GPU (fastest, most memory)"),
    ("model_offload", "Model offload", "Move whole models to the GPU when used"),
    ("group_offload", "Group offload", "Stream groups of layers to the GPU"),
    ("sequential_offload", "Sequential offload", "Stream layer by layer (slowest, least memory)"),
)


class TRAJPLATE_PG_settings(bpy.types.PropertyGroup):
    pipeline: StringProperty(name="Pipeline", default="3dtrajmaster",
                             description="Pipeline id (3dtrajmaster, trajectory-attention, posetraj, ...)")
    negative_prompt: StringProperty(name="Negative", default="", description="Negative prompt; empty: preset default")
    seed: IntProperty(name="Seed", default=0, min=0, description="Seed of the first take; variations add 1, 2, ...")
    variations: IntProperty(name="Variations", default=1, min=1, max=16,
                            description="Seeds per click, queued as one job each")
    steps: IntProperty(name="Steps", default=0, min=0, max=1000, description="Denoising steps; 0: preset default")
    guidance: FloatProperty(name="Guidance (CFG)", default=-1.0, min=-1.0, max=50.0, precision=2,
                            description="Classifier-free guidance scale; negative: preset default")
    strength: FloatProperty(name="Strength", default=-1.0, min=-1.0, max=4.0, precision=2,
                            description="Control (adapter / ControlNet) weight; negative: preset default")
    tier: StringProperty(name="Tier", default="", description="Quality tier (draft, final); empty: none")
    memory_mode: EnumProperty(name="Memory", items=MEMORY_MODES, default="resident")
    options: StringProperty(name="Options", default="",
                            description='Pipeline-specific options as JSON, e.g. {"step_ms": 0}; empty: none')
    score: BoolProperty(name="Adherence score", default=False,
                        description="Ask the backend to measure how well the take follows the shot's trajectories")
    use_scene_range: BoolProperty(name="Scene range", default=True,
                                  description="Export the scene's frame range; off: the range below")
    frame_start: IntProperty(name="Start", default=1)
    frame_end: IntProperty(name="End", default=49)
    redirect_camera: PointerProperty(
        name="Redirect camera", type=bpy.types.Object, poll=lambda _self, obj: obj.type == "CAMERA",
        description="The new camera path to re-shoot the source along (camera-redirect pipelines): a second camera "
                    "of the shot, animated as the take should move")
    source_take: StringProperty(
        name="Source", default="",
        description="Sequencer strip of the take to re-shoot; empty: the shot's own render")

    def job_params(self, seed: int) -> dict:
        """The JSON of ``trajplate.params.GenerateParams`` for one seed (unset values: the preset's).

        Raises ``ValueError`` naming the Options field when it is not a JSON object.
        """
        params = {"pipeline": self.pipeline, "seed": seed, "memory_mode": self.memory_mode, "score": self.score}
        if self.options.strip():
            try:
                options = json.loads(self.options)
            except ValueError as exc:
                raise ValueError(f"Options is not valid JSON ({exc}); write e.g. {{\"step_ms\": 0}} or clear it") from exc
            if not isinstance(options, dict):
                raise ValueError("Options must be a JSON object like {\"key\": value}")
            params["options"] = options
        if self.negative_prompt:
            params["negative_prompt"] = self.negative_prompt
        if self.steps > 0:
            params["steps"] = self.steps
        if self.guidance >= 0:
            params["guidance"] = self.guidance
        if self.strength >= 0:
            params["strength"] = self.strength
        if self.tier:
            params["tier"] = self.tier
        return params

    def apply_defaults(self, info: dict) -> None:
        """Fill steps / CFG / strength from a ``GET /v1/pipelines`` entry's ``defaults``."""
        defaults = info.get("defaults") or {}
        self.steps = int(defaults.get("steps") or 0)
        self.guidance = float(defaults["guidance"]) if defaults.get("guidance") is not None else -1.0
        self.strength = float(defaults["strength"]) if defaults.get("strength") is not None else -1.0


def register():
    bpy.utils.register_class(TRAJPLATE_PG_settings)
    bpy.types.Scene.trajplate = PointerProperty(type=TRAJPLATE_PG_settings)


def unregister():
    del bpy.types.Scene.trajplate
    bpy.utils.unregister_class(TRAJPLATE_PG_settings)
