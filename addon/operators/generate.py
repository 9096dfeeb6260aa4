"""Generate, Cancel, Retry, Re-generate: thin operators over the session's job manager.

They only snapshot Blender state into :class:`~..jobs.JobSpec` and hand it over; the work happens in
:func:`.session.tick` (main thread) and the job workers (no bpy). Headless, ``INVOKE_DEFAULT`` runs ``execute``,
so nothing here depends on ``invoke``.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import bpy
from bpy.props import BoolProperty, StringProperty

from .. import compat, prefs, sequencer
from ..jobs import JobSpec
from . import session


def _network_poll(cls, context) -> bool:
    block = session.network_block(prefs.get(context).backend_url)
    if block:
        cls.poll_message_set(block)
    return not block


def queue_jobs(context, scene, params_list: list[dict], settings) -> tuple[list, str]:
    """Queue one job per params dict behind one export of ``scene``; returns (jobs, warning)."""
    p = prefs.get(context)
    if settings.use_scene_range:
        frame_start, frame_end = scene.frame_start, scene.frame_end
    else:
        frame_start, frame_end = settings.frame_start, settings.frame_end
    if frame_end < frame_start:
        raise ValueError(f"the frame range {frame_start}-{frame_end} is empty: set End after Start")
    folder, warning = sequencer.takes_folder(p.takes_dir, scene.name)
    bundle = Path(tempfile.mkdtemp(prefix="trajplate-")) / f"{sequencer.slug(scene.name)}.zip"
    target = compat.sequencer_scene(context)
    specs = [JobSpec(scene=scene.name, sequencer_scene=target.name, shot=scene.name, frame_start=frame_start,
                     frame_end=frame_end, params=params, backend_url=p.backend_url, token=prefs.token(p),
                     takes_dir=folder, timeout=p.timeout, download_timeout=p.download_timeout,
                     poll_interval=p.poll_interval)
             for params in params_list]
    try:
        export = session.background_export(scene, bundle, settings)
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
           TRAJPLATE_OT_regenerate_take, TRAJPLATE_OT_notify)
