"""Operators on takes in the sequencer: select one, open its job metadata."""

from __future__ import annotations

import json
from pathlib import Path

import bpy
from bpy.props import StringProperty

from .. import compat, sequencer
from .generate import active_take


class TRAJPLATE_OT_select_take(bpy.types.Operator):
    bl_idname = "trajplate.select_take"
    bl_label = "Select Take"
    bl_description = "Select this take in the sequencer and make it active"

    strip: StringProperty(options={"SKIP_SAVE"})

    def execute(self, context):
        editor = compat.sequencer_scene(context).sequence_editor
        strip = compat.strips_all(editor).get(self.strip) if editor else None
        if strip is None:
            self.report({"ERROR"}, f"no strip named {self.strip!r} in the sequencer")
            return {"CANCELLED"}
        for s in compat.strips_all(editor):
            s.select = False
        strip.select = True
        editor.active_strip = strip
        return {"FINISHED"}


def metadata_text(strip) -> bpy.types.Text:
    """Load the take's saved metadata JSON into a Text datablock named after the strip.

    Raises ``FileNotFoundError`` naming the file when it was moved or deleted.
    """
    path = Path(bpy.path.abspath(strip[sequencer.PROP_PREFIX + "metadata_path"]))
    data = json.loads(path.read_text(encoding="utf-8"))
    name = f"{strip.name} metadata"
    text = bpy.data.texts.get(name) or bpy.data.texts.new(name)
    text.from_string(json.dumps(data, indent=2, sort_keys=True))
    text.filepath = str(path)
    return text


class TRAJPLATE_OT_open_metadata(bpy.types.Operator):
    bl_idname = "trajplate.open_metadata"
    bl_label = "Open Job Metadata"
    bl_description = "Show the active take's job metadata (pipeline, weights, seed, prompts, hashes) in a Text Editor"

    @classmethod
    def poll(cls, context):
        if active_take(context) is None:
            cls.poll_message_set("Select a TrajPlate take in the sequencer")
            return False
        return True

    def execute(self, context):
        strip = active_take(context)
        try:
            text = metadata_text(strip)
        except (OSError, ValueError, KeyError) as exc:
            self.report({"ERROR"}, f"Cannot read the metadata of {strip.name}: {exc}")
            return {"CANCELLED"}
        for area in context.screen.areas if context.screen else ():
            if area.type == "TEXT_EDITOR":
                area.spaces.active.text = text
                break
        else:
            self.report({"INFO"}, f"Metadata is in the Text Editor as '{text.name}'")
        return {"FINISHED"}


CLASSES = (TRAJPLATE_OT_select_take, TRAJPLATE_OT_open_metadata)
