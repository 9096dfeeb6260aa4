"""Backend operators: refresh status and pipelines, pick a pipeline, start / stop / show the local backend."""

from __future__ import annotations

import bpy
from bpy.props import EnumProperty

from .. import prefs
from ..local_backend import LocalBackend
from . import session

# The five pipelines of the DESIGN, offered before any backend has answered.
KNOWN_PIPELINES = ("3dtrajmaster", "trajectory-attention", "posetraj", "trajectorycrafter", "magicmotion")
LOG_TEXT = "TrajPlate backend log"

local = LocalBackend()
_enum_items: list = []  # Blender needs the dynamic enum's items kept alive


def _pipeline_items(self, context):
    listed = session.backend()["pipelines"]
    items = []
    for i, info in enumerate(listed):
        native = info.get("native") or {}
        weights = "weights present" if info.get("available") else (
            "tiny weights only" if info.get("tiny_available") else "no weights")
        desc = (f"{native.get('width')}×{native.get('height')}, {native.get('frames')} frames at "
                f"{native.get('fps')} fps; {weights}")
        items.append((info["id"], info.get("name") or info["id"], desc, "CHECKMARK" if info.get("available")
                      else "ERROR", i))
    if not items:
        items = [(pid, pid, "backend not asked yet (press Refresh)", "QUESTION", i)
                 for i, pid in enumerate(KNOWN_PIPELINES)]
    _enum_items[:] = items
    return _enum_items


class TRAJPLATE_OT_refresh_backend(bpy.types.Operator):
    bl_idname = "trajplate.refresh_backend"
    bl_label = "Refresh"
    bl_description = "Ask the backend for its status and pipelines"

    @classmethod
    def poll(cls, context):
        block = session.network_block(prefs.get(context).backend_url)
        if block:
            cls.poll_message_set(block)
        return not block

    def execute(self, context):
        session.refresh_backend(session.client(context))
        return {"FINISHED"}


class TRAJPLATE_OT_set_pipeline(bpy.types.Operator):
    bl_idname = "trajplate.set_pipeline"
    bl_label = "Pipeline"
    bl_description = "Pick the pipeline; its preset's steps, guidance and strength are filled in"
    bl_property = "pipeline"

    pipeline: EnumProperty(name="Pipeline", items=_pipeline_items)

    def execute(self, context):
        settings = context.scene.trajplate
        settings.pipeline = self.pipeline
        info = session.pipeline_info(self.pipeline)
        if info is not None:
            settings.apply_defaults(info)
        return {"FINISHED"}


class TRAJPLATE_OT_reset_params(bpy.types.Operator):
    bl_idname = "trajplate.reset_params"
    bl_label = "Preset Defaults"
    bl_description = "Set steps, guidance and strength back to the pipeline preset's values"

    def execute(self, context):
        settings = context.scene.trajplate
        info = session.pipeline_info(settings.pipeline)
        if info is None:
            settings.steps, settings.guidance, settings.strength = 0, -1.0, -1.0  # the backend decides
        else:
            settings.apply_defaults(info)
        return {"FINISHED"}


def show_log() -> bpy.types.Text:
    """Copy the local backend's log tail into a Text datablock (open it in a Text Editor)."""
    text = bpy.data.texts.get(LOG_TEXT) or bpy.data.texts.new(LOG_TEXT)
    text.from_string(local.tail() or "(the local backend has not been started)")
    return text


class TRAJPLATE_OT_local_backend(bpy.types.Operator):
    bl_idname = "trajplate.local_backend"
    bl_label = "Local Backend"
    bl_description = "Start or stop 'trajplate serve' on 127.0.0.1 with the Python set in the preferences"

    action: EnumProperty(items=(("START", "Start", ""), ("STOP", "Stop", ""), ("LOG", "Show Log", "")))

    def execute(self, context):
        p = prefs.get(context)
        if self.action == "START":
            try:
                log = local.start(p.local_python, p.local_port, p.local_args)
            except (ValueError, OSError) as exc:
                self.report({"ERROR"}, f"Local backend: {exc}")
                return {"CANCELLED"}
            p.backend_url = local.url(p.local_port)
            proc = local.proc
            session.refresh_backend(session.client(context), starting=lambda: local.why_stopped(proc))
            self.report({"INFO"}, f"Local backend starting on {p.backend_url}; log: {log}")
        elif self.action == "STOP":
            local.stop()
            session.refresh_backend(session.client(context))  # the panel must not go on saying "Connected"
            self.report({"INFO"}, "Local backend stopped")
        else:
            text = show_log()
            self.report({"INFO"}, f"Backend log is in the Text Editor as '{text.name}'")
        return {"FINISHED"}


CLASSES = (TRAJPLATE_OT_refresh_backend, TRAJPLATE_OT_set_pipeline, TRAJPLATE_OT_reset_params,
           TRAJPLATE_OT_local_backend)


def unregister_runtime():
    local.stop()
