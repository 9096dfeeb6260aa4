"""The TrajPlate sidebar tab, in the 3D viewport and in the sequencer, plus a status-bar progress readout.

Panels only read: Blender state, the session's job list and the backend's last answers. Each section is drawn
by one function and registered once per editor.
"""

from __future__ import annotations

import textwrap

import bpy

from .. import prefs, sequencer
from ..export import props
from ..export.entities import explicit_entities, marked_entities
from ..operators import generate, session
from ..operators.backend import local

JOB_ICONS = {"succeeded": "CHECKMARK", "failed": "ERROR", "cancelled": "CANCEL"}
CHAR_PX = 7.0  # average width of a UI-font character at scale 1 (Blender's default font, 11 pt)


def wrapped_label(layout, context, text: str, icon: str) -> None:
    """``text`` as labels wrapped to the region's width: Blender cuts a long label in its middle, and the end of an
    error line is where the reason and the fix are (no break at hyphens: `--max-queue` stays whole)."""
    region = getattr(context, "region", None)
    scale = context.preferences.system.ui_scale if context.preferences else 1.0
    chars = max(16, int((region.width - 40) / (CHAR_PX * scale))) if region else 60  # 40 px: icon and margins
    col = layout.column(align=True)
    for i, line in enumerate(textwrap.wrap(text, chars, break_on_hyphens=False) or [""]):
        col.label(text=line, icon=icon if i == 0 else "BLANK1")


def entities(scene) -> tuple[list, bool]:
    """(objects, explicit): the TrajPlate collection / marked objects; explicit False means the export will also
    pick up whatever moves (no TrajPlate collection)."""
    chosen = explicit_entities(scene)
    return (chosen, True) if chosen is not None else (marked_entities(scene), False)


def draw_backend(layout, context):
    p = prefs.get(context)
    state = session.backend()
    row = layout.row(align=True)
    health = state["health"] if state["url"] == p.backend_url.rstrip("/") else None
    if state["busy"]:
        row.label(text="Starting local backend…" if state.get("starting") else "Connecting…", icon="SORTTIME")
    elif health:
        gpu = health.get("gpu") or "no GPU"
        row.label(text=f"Connected · v{health.get('version', '?')} · {gpu}", icon="LINKED")
    else:
        row.label(text="Not connected", icon="UNLINKED")
    row.operator("trajplate.refresh_backend", text="", icon="FILE_REFRESH")
    col = layout.column(align=True)
    col.label(text=p.backend_url, icon="URL")
    if health:
        col.label(text=f"Queue: {health.get('queue_length', 0)} · executor {health.get('executor', '?')}")
    if state["error"]:
        wrapped_label(col, context, state["error"], "ERROR")
    block = session.network_block(p.backend_url)
    if block:
        wrapped_label(col, context, block, "INTERNET_OFFLINE")
    row = layout.row(align=True)
    if local.running:
        row.operator("trajplate.local_backend", text="Stop Local Backend", icon="PAUSE").action = "STOP"
    else:
        row.operator("trajplate.local_backend", text="Start Local Backend", icon="PLAY").action = "START"
    row.operator("trajplate.local_backend", text="", icon="TEXT").action = "LOG"


def draw_shot(layout, context):
    scene = context.scene
    col = layout.column(align=True)
    if props.SCENE_PROMPT in scene:
        col.prop(scene, f'["{props.SCENE_PROMPT}"]', text="Scene")
        col.prop(scene, f'["{props.LOCATION_PROMPT}"]', text="Location")
    else:
        col.operator("trajplate.add_scene_prompts", icon="ADD")
    if scene.camera is None:
        layout.label(text="The scene has no camera", icon="ERROR")
    found, explicit = entities(scene)
    layout.label(text=f"Entities ({len(found)})", icon="OUTLINER_OB_GROUP_INSTANCE")
    if not explicit:
        layout.label(text="+ every moving object (no TrajPlate collection)", icon="INFO")
    for obj in found:
        box = layout.box()
        row = box.row(align=True)
        row.label(text=obj.name, icon="OBJECT_DATA")
        if props.COLOR in obj:
            row.prop(obj, f'["{props.COLOR}"]', text="")
        if props.PROMPT in obj:
            box.prop(obj, f'["{props.PROMPT}"]', text="")
        row = box.row(align=True)
        for which, key, default in (("FORWARD", props.FORWARD_AXIS, props.DEFAULT_FORWARD_AXIS),
                                    ("UP", props.UP_AXIS, props.DEFAULT_UP_AXIS)):
            op = row.operator_menu_enum("trajplate.set_axis", "axis",
                                        text=f"{which.title()} {obj.get(key, default)}")
            op.object, op.which = obj.name, which
    layout.operator("trajplate.make_entity", text="Make Selected Entities", icon="ADD")


def _checks(context, settings, info) -> list[tuple[bool, str]]:
    """(ok, text) for what can be checked here (the redirect camera and source too, for pipelines that take them),
    then the preset's requirements as reminders."""
    scene = context.scene
    found, explicit = entities(scene)
    checks = [(scene.camera is not None, "scene camera"),
              (bool(found) or not explicit, f"{len(found)} entit{'y' if len(found) == 1 else 'ies'}"
                                            + ("" if explicit else " + moving objects")),
              (all(o.get(props.PROMPT) for o in found) and bool(found), "every entity has a prompt"),
              (bool(scene.get(props.SCENE_PROMPT)), "scene prompt")]
    try:
        params = settings.job_params(settings.seed)
    except ValueError:  # a broken Options JSON is reported by Generate
        params = {}
    checks += generate.loop_checks(context, scene, settings, info, params)
    return checks + [(None, text) for text in (info or {}).get("requirements", [])]


def draw_redirect(layout, context, settings, info):
    """Redirect camera and source of a camera-redirect pipeline (shown only when the pipeline takes them)."""
    box = layout.box()
    col = box.column()
    if generate.takes_redirect_camera(info):
        col.label(text="Redirect camera", icon="OUTLINER_OB_CAMERA")
        col.prop(settings, "redirect_camera", text="")
    if generate.takes_source_video(info):
        col.label(text="Source", icon="SEQUENCE")
        col.operator_menu_enum("trajplate.set_source", "source", text=settings.source_take or "Shot render",
                               icon="SEQUENCE" if settings.source_take else "RENDER_STILL")


def draw_generate(layout, context):
    settings = context.scene.trajplate
    info = session.pipeline_info(settings.pipeline)
    layout.operator_menu_enum("trajplate.set_pipeline", "pipeline",
                              text=(info or {}).get("name") or settings.pipeline, icon="SEQ_SEQUENCER")
    if info:
        native = info.get("native") or {}
        col = layout.column(align=True)
        col.label(text=f"{native.get('width')}×{native.get('height')} · {native.get('frames')} frames · "
                       f"{native.get('fps')} fps")
        if info.get("available"):
            col.label(text="Weights present", icon="CHECKMARK")
        elif info.get("tiny_available"):
            col.label(text="Tiny test weights only (output is noise)", icon="ERROR")
        else:
            col.label(text="Weights not downloaded on the backend", icon="ERROR")
        licence = info.get("licence") or {}
        col.label(text=f"Licence: {licence.get('base', '?')}"
                       + (" · research only" if licence.get("research_only") else ""), icon="INFO")
    if generate.takes_redirect_camera(info) or generate.takes_source_video(info):
        draw_redirect(layout, context, settings, info)
    col = layout.column(align=True)
    col.prop(settings, "seed")
    col.prop(settings, "variations")
    col.prop(settings, "steps")
    col.prop(settings, "guidance")
    if info is None or (info.get("defaults") or {}).get("strength") is not None:
        col.prop(settings, "strength")
    col.prop(settings, "negative_prompt")
    col.prop(settings, "options")
    row = layout.row(align=True)
    row.prop(settings, "memory_mode", text="")
    row.prop(settings, "score", toggle=True)
    layout.operator("trajplate.reset_params", icon="LOOP_BACK")
    row = layout.row(align=True)
    row.prop(settings, "use_scene_range")
    if not settings.use_scene_range:
        row.prop(settings, "frame_start")
        row.prop(settings, "frame_end")

    box = layout.box()
    box.label(text="Check list")
    for ok, text in _checks(context, settings, info):
        if ok is False and ": " in text:  # what is wrong, then the fix on its own line (the sidebar is narrow)
            problem, fix = text.split(": ", 1)
            col = box.column(align=True)
            col.label(text=problem, icon="CHECKBOX_DEHLT")
            col.label(text=fix, icon="BLANK1")
        else:
            box.label(text=text, icon="DOT" if ok is None else ("CHECKBOX_HLT" if ok else "CHECKBOX_DEHLT"))

    layout.operator("trajplate.preview_controls", icon="HIDE_OFF")
    row = layout.row(align=True)
    row.scale_y = 1.4
    row.operator("trajplate.generate", icon="RENDER_ANIMATION")
    row.operator("trajplate.cancel_job", text="Cancel", icon="CANCEL").job_id = ""
    draw_jobs(layout, context)


def draw_jobs(layout, context):
    jobs = session.manager.jobs
    if not jobs:
        return
    col = layout.column()
    for job in reversed(jobs):
        box = col.box()
        row = box.row(align=True)
        row.label(text=job.label, icon=JOB_ICONS.get(job.state, "SORTTIME"))
        if job.active:
            row.operator("trajplate.cancel_job", text="", icon="X").job_id = job.id
        elif job.state in ("failed", "cancelled"):
            row.operator("trajplate.retry_job", text="", icon="FILE_REFRESH").job_id = job.id
        if job.active:
            box.progress(factor=job.fraction, text=job.status_line)
        elif job.state == "failed":
            wrapped_label(box, context, job.error, "ERROR")
        elif job.strip:
            box.label(text=job.strip, icon="SEQUENCE")
    col.operator("trajplate.clear_jobs", icon="TRASH")


def draw_takes(layout, context):
    scene = context.scene
    found = sequencer.takes(scene)
    if not found:
        layout.label(text="No takes yet")
    for strip in found:
        row = layout.row(align=True)
        row.operator("trajplate.select_take", text=strip.name, icon="SEQUENCE", emboss=False).strip = strip.name
        summary = strip.get(sequencer.PROP_PREFIX + "score_summary")
        if summary:
            row.label(text=summary)
    row = layout.row(align=True)
    row.operator("trajplate.regenerate_take", icon="FILE_REFRESH")
    row.operator("trajplate.open_metadata", text="Metadata", icon="TEXT")
    if generate.active_take(context) is not None:
        strip = generate.active_take(context)
        if strip.get(sequencer.PROP_PREFIX + "tiny"):
            layout.label(text="Made with tiny test weights", icon="ERROR")


def _panel(space: str, order: int, key: str, label: str, draw, closed: bool = False):
    prefix = "view3d" if space == "VIEW_3D" else "sequencer"
    attrs = {"bl_idname": f"TRAJPLATE_PT_{prefix}_{key}", "bl_label": label, "bl_space_type": space,
             "bl_region_type": "UI", "bl_category": "TrajPlate", "bl_order": order,
             "draw": lambda self, context: draw(self.layout, context)}
    if closed:
        attrs["bl_options"] = {"DEFAULT_CLOSED"}
    return type(attrs["bl_idname"], (bpy.types.Panel,), attrs)


def _status(self, context):
    active = [job for job in session.manager.jobs if job.active]
    if active:
        job = active[0]
        more = f" (+{len(active) - 1})" if len(active) > 1 else ""
        self.layout.progress(factor=job.fraction, text=f"TrajPlate {job.label}: {job.status_line}{more}")


CLASSES = tuple(
    cls for space in ("VIEW_3D", "SEQUENCE_EDITOR") for cls in (
        _panel(space, 0, "backend", "Backend", draw_backend),
        _panel(space, 1, "shot", "Shot", draw_shot, closed=space == "SEQUENCE_EDITOR"),
        _panel(space, 2, "generate", "Generate", draw_generate),
        _panel(space, 3, "takes", "Takes", draw_takes),
    ))


def register():
    for cls in CLASSES:
        bpy.utils.register_class(cls)
    bpy.types.STATUSBAR_HT_header.append(_status)


def unregister():
    bpy.types.STATUSBAR_HT_header.remove(_status)
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
