"""Generate, Cancel, Retry, Re-generate, Source: thin operators over the session's job manager.

They only snapshot Blender state into :class:`~..jobs.JobSpec` and hand it over; the work happens in
:func:`.session.tick` (main thread) and the job workers (no bpy). Headless, ``INVOKE_DEFAULT`` runs ``execute``,
so nothing here depends on ``invoke``.

Camera-redirect pipelines (TrajectoryCrafter) are recognised by what ``GET /v1/pipelines`` says, not by id: a
pipeline with ``target_w2c`` among its options gets the scene's **redirect camera** (sampled at every exported frame
in the export's child process, sent as ``options.target_w2c`` / ``options.target_K``); one with ``source_video``
among its ``input_files`` gets the **source**: a take of this shot from the sequencer (its movie file is uploaded) or
the shot's own render (the export then renders every frame).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import bpy
from bpy.props import BoolProperty, EnumProperty, StringProperty

from .. import compat, prefs, sequencer
from ..export.redirect import redirect_path
from ..jobs import JobSpec
from . import session

RENDER_SOURCE = "SHOT_RENDER"  # the Source menu's item for the shot's own render (stored as source_take "")
REDIRECT_OPTIONS = ("target_w2c", "target_pose")  # an Options JSON naming one of these sets the path itself


def _network_poll(cls, context) -> bool:
    block = session.network_block(prefs.get(context).backend_url)
    if block:
        cls.poll_message_set(block)
    return not block


def takes_redirect_camera(info: dict | None) -> bool:
    """Whether a ``GET /v1/pipelines`` entry takes a redirect camera path (``target_w2c`` among its options)."""
    return "target_w2c" in (((info or {}).get("options_schema") or {}).get("properties") or {})


def takes_source_video(info: dict | None) -> bool:
    """Whether a ``GET /v1/pipelines`` entry takes a source take (``source_video`` among its ``input_files``)."""
    return "source_video" in ((info or {}).get("input_files") or [])


def shot_takes(context, scene) -> list:
    """The TrajPlate takes of ``scene`` (the shot) in the sequencer, newest first."""
    return [s for s in sequencer.takes(compat.sequencer_scene(context))
            if s.get(sequencer.PROP_PREFIX + "scene") == scene.name]


def _redirect_check(scene, settings) -> tuple[bool, str]:
    camera = settings.redirect_camera
    if camera is None:
        return False, "Redirect camera not set: pick a second, animated camera"
    shot_cameras = {scene.camera} | {m.camera for m in scene.timeline_markers if m.camera is not None}
    if camera in shot_cameras:
        return False, "Redirect camera is the shot camera: pick a second camera"
    if scene.objects.get(camera.name) is None:
        return False, f"Redirect camera is not in the scene: link '{camera.name}' to '{scene.name}'"
    if camera.data.type != "PERSP":
        return False, "Redirect camera is not perspective: set Lens › Type to Perspective"
    return True, f"redirect camera: {camera.name}"


def _source_check(context, scene, settings) -> tuple[bool, str]:
    if not settings.source_take:
        return True, "source: shot render"
    strip = next((s for s in shot_takes(context, scene) if s.name == settings.source_take), None)
    if strip is None:
        return False, "Source take is not in the sequencer: pick another source"
    path = Path(bpy.path.abspath(strip.filepath))
    if not path.is_file():
        return False, f"Source take lost its movie file: pick another source ({path})"
    return True, f"source: {strip.name}"


def uses_redirect_camera(info: dict | None, params: dict) -> bool:
    """The pipeline takes a redirect path and the Options JSON does not set one itself."""
    return takes_redirect_camera(info) and not set(REDIRECT_OPTIONS) & set(params.get("options") or {})


def loop_checks(context, scene, settings, info: dict | None, params: dict) -> list[tuple[bool, str]]:
    """(ok, text) of the redirect camera and the source, for the pipelines that take them (else none)."""
    checks = []
    if uses_redirect_camera(info, params):
        checks.append(_redirect_check(scene, settings))
    if takes_source_video(info):
        checks.append(_source_check(context, scene, settings))
    return checks


def queue_jobs(context, scene, params_list: list[dict], settings) -> tuple[list, str]:
    """Queue one job per params dict behind one export of ``scene``; returns (jobs, warning).

    Raises ValueError with the first failed check (frame range, redirect camera, source take)."""
    p = prefs.get(context)
    if settings.use_scene_range:
        frame_start, frame_end = scene.frame_start, scene.frame_end
    else:
        frame_start, frame_end = settings.frame_start, settings.frame_end
    if frame_end < frame_start:
        raise ValueError(f"the frame range {frame_start}-{frame_end} is empty: set End after Start")
    info = session.pipeline_info(params_list[0]["pipeline"])
    failed = [text for ok, text in loop_checks(context, scene, settings, info, params_list[0]) if not ok]
    if failed:
        raise ValueError(failed[0])
    redirect = settings.redirect_camera.name if uses_redirect_camera(info, params_list[0]) else ""
    take = next((s for s in shot_takes(context, scene) if s.name == settings.source_take), None)
    source = Path(bpy.path.abspath(take.filepath)) if takes_source_video(info) and take is not None else None
    folder, warning = sequencer.takes_folder(p.takes_dir, scene.name)
    bundle = Path(tempfile.mkdtemp(prefix="trajplate-")) / f"{sequencer.slug(scene.name)}.zip"
    target = compat.sequencer_scene(context)
    specs = [JobSpec(scene=scene.name, sequencer_scene=target.name, shot=scene.name, frame_start=frame_start,
                     frame_end=frame_end, params=params, backend_url=p.backend_url, token=prefs.token(p),
                     takes_dir=folder, timeout=p.timeout, download_timeout=p.download_timeout,
                     poll_interval=p.poll_interval, source_video=source,
                     redirect=redirect_path(bundle) if redirect else None)
             for params in params_list]
    try:
        # Without a take, a pipeline that re-shoots a source re-shoots the shot's render: every frame of it.
        export = session.background_export(scene, bundle, settings, rgb_frames=takes_source_video(info)
                                           and source is None, redirect_camera=redirect)
    except RuntimeError as exc:  # the snapshot could not be written
        raise ValueError(f"could not save a snapshot of the file for the export: {exc}") from exc
    jobs = session.manager.queue(specs, export)
    return jobs, warning


class TRAJPLATE_OT_generate(bpy.types.Operator):
    bl_idname = "trajplate.generate"
    bl_label = "Generate"
    bl_description = "Export the shot and queue one job per variation on the backend; takes land in the sequencer"

    @classmethod
    def poll(cls, context):
        return _network_poll(cls, context)

    def execute(self, context):
        scene = context.scene
        settings = scene.trajplate
        try:
            params = [settings.job_params(settings.seed + i) for i in range(settings.variations)]
            jobs, warning = queue_jobs(context, scene, params, settings)
        except ValueError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        if warning:
            self.report({"WARNING"}, warning)
        self.report({"INFO"}, f"TrajPlate: queued {len(jobs)} take(s) of {settings.pipeline}")
        return {"FINISHED"}


class TRAJPLATE_OT_cancel_job(bpy.types.Operator):
    bl_idname = "trajplate.cancel_job"
    bl_label = "Cancel"
    bl_description = "Stop the job here and on the backend (empty id: every running job)"

    job_id: StringProperty(options={"SKIP_SAVE"})

    def execute(self, context):
        jobs = [j for j in session.manager.jobs if j.active and (not self.job_id or j.id == self.job_id)]
        for job in jobs:
            session.manager.cancel(job)
        self.report({"INFO"}, f"TrajPlate: cancelling {len(jobs)} job(s)")
        return {"FINISHED"}


class TRAJPLATE_OT_retry_job(bpy.types.Operator):
    bl_idname = "trajplate.retry_job"
    bl_label = "Retry"
    bl_description = "Run the job again (a take the backend already made is only downloaded again)"

    job_id: StringProperty(options={"SKIP_SAVE"})

    @classmethod
    def poll(cls, context):
        return _network_poll(cls, context)

    def execute(self, context):
        job = session.manager.get(self.job_id)
        if job is None:
            self.report({"ERROR"}, f"no job {self.job_id!r} in this session")
            return {"CANCELLED"}
        try:
            session.manager.retry(job)
        except ValueError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        return {"FINISHED"}


class TRAJPLATE_OT_clear_jobs(bpy.types.Operator):
    bl_idname = "trajplate.clear_jobs"
    bl_label = "Clear Finished"
    bl_description = "Remove finished, failed and cancelled jobs from the list (takes stay in the sequencer)"

    def execute(self, context):
        session.manager.clear_finished()
        return {"FINISHED"}


def active_take(context):
    """The active sequencer strip if it is a TrajPlate take, else None."""
    editor = compat.sequencer_scene(context).sequence_editor
    strip = editor.active_strip if editor else None
    return strip if strip is not None and sequencer.PROP_PREFIX + "job_id" in strip else None


class TRAJPLATE_OT_regenerate_take(bpy.types.Operator):
    bl_idname = "trajplate.regenerate_take"
    bl_label = "Re-generate This Take"
    bl_description = ("Export the shot again and queue a job with the active take's pipeline, seed, steps and "
                      "guidance")

    new_seed: BoolProperty(name="New seed", default=False, description="Use the next seed instead of the take's")

    @classmethod
    def poll(cls, context):
        if active_take(context) is None:
            cls.poll_message_set("Select a TrajPlate take in the sequencer")
            return False
        return _network_poll(cls, context)

    def execute(self, context):
        strip = active_take(context)
        get = lambda key, default=None: strip.get(sequencer.PROP_PREFIX + key, default)  # noqa: E731
        scene = bpy.data.scenes.get(get("scene", "")) or context.scene
        params = {"pipeline": get("pipeline"), "seed": int(get("seed", 0)) + (1 if self.new_seed else 0),
                  "steps": int(get("steps", 0)) or None, "guidance": get("guidance"),
                  "negative_prompt": get("negative_prompt") or None,
                  "memory_mode": scene.trajplate.memory_mode, "score": sequencer.PROP_PREFIX + "score" in strip}
        try:
            queue_jobs(context, scene, [{k: v for k, v in params.items() if v is not None}], scene.trajplate)
        except ValueError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        self.report({"INFO"}, f"TrajPlate: re-generating {strip.name}")
        return {"FINISHED"}


_source_items: list = []  # Blender needs the dynamic enum's items kept alive


def _source_enum(self, context):
    items = [(RENDER_SOURCE, "Shot render", "Re-shoot the shot's own render (every exported frame is rendered)",
              "RENDER_STILL", 0)]
    for i, strip in enumerate(shot_takes(context, context.scene), 1):
        items.append((strip.name, strip.name, f"Re-shoot this take ({bpy.path.basename(strip.filepath)})",
                      "SEQUENCE", i))
    _source_items[:] = items
    return _source_items


class TRAJPLATE_OT_set_source(bpy.types.Operator):
    bl_idname = "trajplate.set_source"
    bl_label = "Source"
    bl_description = "What the camera-redirect pipeline re-shoots: the shot's render or a take of it in the sequencer"
    bl_property = "source"

    source: EnumProperty(name="Source", items=_source_enum)

    def execute(self, context):
        context.scene.trajplate.source_take = "" if self.source == RENDER_SOURCE else self.source
        return {"FINISHED"}


class TRAJPLATE_OT_notify(bpy.types.Operator):
    bl_idname = "trajplate.notify"
    bl_label = "TrajPlate Message"
    bl_options = {"INTERNAL"}

    message: StringProperty()
    level: StringProperty(default="INFO")

    def execute(self, context):
        self.report({self.level}, self.message)
        return {"FINISHED"}


CLASSES = (TRAJPLATE_OT_generate, TRAJPLATE_OT_cancel_job, TRAJPLATE_OT_retry_job, TRAJPLATE_OT_clear_jobs,
           TRAJPLATE_OT_regenerate_take, TRAJPLATE_OT_set_source, TRAJPLATE_OT_notify)
