"""Operators that set the shot's prompts and entity properties the export reads (names in ``export.props``)."""

from __future__ import annotations

import bpy
from bpy.props import EnumProperty, StringProperty

from ..export import props
from ..export.entities import stable_color


class TRAJPLATE_OT_add_scene_prompts(bpy.types.Operator):
    bl_idname = "trajplate.add_scene_prompts"
    bl_label = "Add Scene Prompts"
    bl_description = "Give the scene a prompt (what happens) and a location phrase (where)"

    def execute(self, context):
        for key in (props.SCENE_PROMPT, props.LOCATION_PROMPT):
            context.scene.setdefault(key, "")
        return {"FINISHED"}


class TRAJPLATE_OT_make_entity(bpy.types.Operator):
    bl_idname = "trajplate.make_entity"
    bl_label = "Make Entity"
    bl_description = "Mark the selected objects as shot entities with a prompt, forward/up axes and a colour"

    @classmethod
    def poll(cls, context):
        return bool(context.selected_objects)

    def execute(self, context):
        for obj in context.selected_objects:
            if obj.type == "CAMERA":
                continue
            obj[props.MARKED_ENTITY] = True
            obj.setdefault(props.PROMPT, "")
            obj.setdefault(props.FORWARD_AXIS, props.DEFAULT_FORWARD_AXIS)
            obj.setdefault(props.UP_AXIS, props.DEFAULT_UP_AXIS)
            obj.setdefault(props.COLOR, stable_color(obj.name))
        return {"FINISHED"}


class TRAJPLATE_OT_set_axis(bpy.types.Operator):
    bl_idname = "trajplate.set_axis"
    bl_label = "Set Axis"
    bl_description = "Which local axis of the object points forward / up"
    bl_property = "axis"

    object: StringProperty(options={"SKIP_SAVE"})
    which: EnumProperty(items=(("FORWARD", "Forward", ""), ("UP", "Up", "")), options={"SKIP_SAVE"})
    axis: EnumProperty(items=[(a, a, f"local {a} axis") for a in props.AXES])

    def execute(self, context):
        obj = bpy.data.objects.get(self.object)
        if obj is None:
            self.report({"ERROR"}, f"no object named {self.object!r}")
            return {"CANCELLED"}
        key = props.FORWARD_AXIS if self.which == "FORWARD" else props.UP_AXIS
        other = obj.get(props.UP_AXIS if self.which == "FORWARD" else props.FORWARD_AXIS, "")
        if other.lstrip("-") == self.axis.lstrip("-"):
            self.report({"ERROR"}, f"forward and up must be different axes ({self.axis} and {other})")
            return {"CANCELLED"}
        obj[key] = self.axis
        return {"FINISHED"}


CLASSES = (TRAJPLATE_OT_add_scene_prompts, TRAJPLATE_OT_make_entity, TRAJPLATE_OT_set_axis)
