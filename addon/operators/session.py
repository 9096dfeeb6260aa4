"""What one Blender session keeps at run time: the job manager, the backend's last answers, the timer.

Nothing here is saved in the .blend. The timer calls :func:`tick` (tests call it directly: ``bpy.app.timers``
never fire in the bpy module). Backend status and the pipeline list are fetched in a short-lived thread that only
swaps a plain dict (``backend``); the panel reads it.
"""

from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import bpy

from .. import prefs, sequencer
from ..client import BackendError, Client, is_loopback
from ..export import redirect
from ..export.background import background_export as export_process
from ..export.exporter import ExportOptions
from ..export.process import ExportProcess
from ..jobs import Job, JobManager

TICK_ACTIVE_S = 0.1
TICK_IDLE_S = 1.0
REDRAW_AREAS = ("VIEW_3D", "SEQUENCE_EDITOR")
STARTUP_POLL_S = 0.5
STARTUP_WAIT_S = 300.0  # a cold start imports torch and diffusers; minutes on a slow disk

# The backend's last answers: {"url", "health" | None, "pipelines" [...], "error" "", "busy" bool, "starting" bool
# (waiting for a local backend to open its port)}. The refresh thread replaces the whole dict (one assignment), so
# the panel never sees half an update.
_backend = {"state": {"url": "", "health": None, "pipelines": [], "error": "", "busy": False}}
_changed = threading.Event()


def network_block(url: str) -> str:
    """Why ``url`` may not be used now ('' if it may): non-loopback URLs need Blender's online access."""
    if is_loopback(url) or bpy.app.online_access:
        return ""
    if getattr(bpy.app, "online_access_override", False):
        return "Online access is disabled from the command line (--offline-mode); only a local backend can be used"
    return "Online access is off: enable Preferences ▸ System ▸ Network ▸ Allow Online Access, or use a local backend"


def client(context=None) -> Client:
    p = prefs.get(context)
    return Client(p.backend_url, prefs.token(p), p.timeout, p.download_timeout)


def backend() -> dict:
    return _backend["state"]


def pipeline_info(pipeline_id: str) -> dict | None:
    return next((p for p in backend()["pipelines"] if p.get("id") == pipeline_id), None)


def refresh_backend(c: Client, starting: Callable[[], str | None] | None = None,
                    wait_s: float = STARTUP_WAIT_S) -> None:
    """Fetch health and pipelines in a thread; the panel shows the result at the next tick.

    ``starting``: for a local backend just launched. It returns None while the process runs, else why it stopped
    (one line). While it runs, an unreachable backend is asked again every ``STARTUP_POLL_S`` for up to ``wait_s``:
    ``trajplate serve`` opens its port only after importing every pipeline package (torch, diffusers).
    """
    def fetch():
        state = {"url": c.base_url, "health": None, "pipelines": backend()["pipelines"], "error": "", "busy": False}
        deadline = time.monotonic() + wait_s
        while True:
            try:
                state["health"] = c.health()
                state["pipelines"] = c.pipelines()
                break
            except BackendError as exc:
                stopped = starting() if starting is not None else None
                if starting is None or stopped or exc.status is not None:
                    state["error"] = stopped or exc.line
                elif time.monotonic() < deadline:
                    time.sleep(STARTUP_POLL_S)
                    continue
                else:
                    state["error"] = (f"Local backend still starting after {wait_s:g} s (port not open): see "
                                      "Local Backend ▸ Log, or refresh later")
                print(f"TrajPlate: {exc.detail}")
                break
        _backend["state"] = state
        _changed.set()

    _backend["state"] = {**backend(), "busy": True, "starting": starting is not None}
    threading.Thread(target=fetch, name="trajplate-refresh", daemon=True).start()


def redraw() -> None:
    wm = bpy.context.window_manager
    if wm is None:
        return
    for window in wm.windows:
        for area in window.screen.areas:
            if area.type in REDRAW_AREAS or area.type == "STATUSBAR":
                area.tag_redraw()


def _import_take(job: Job) -> str:
    scene = bpy.data.scenes.get(job.spec.sequencer_scene)
    if scene is None:
        raise RuntimeError(f"scene {job.spec.sequencer_scene!r} no longer exists")
    strip = sequencer.add_take(scene, job.video, job.metadata or {}, shot=job.spec.shot, shot_scene=job.spec.scene,
                               frame_start=job.spec.frame_start, frame_end=job.spec.frame_end,
                               backend_url=job.spec.backend_url, params=job.spec.params)
    return strip.name


def _report_error(job: Job) -> None:
    print(f"TrajPlate: job {job.label} failed: {job.error}")
    try:
        bpy.ops.trajplate.notify(message=f"TrajPlate {job.label}: {job.error}", level="ERROR")
    except RuntimeError:
        pass  # no window to report in (headless); the panel and the console have it


manager = JobManager(on_take=_import_take, on_change=_changed.set, on_error=_report_error)


def tick() -> bool:
    """One main-thread slice: advance exports, apply worker results, redraw if anything changed."""
    busy = manager.tick()
    if _changed.is_set():
        _changed.clear()
        redraw()
    return busy


def _timer():
    try:
        busy = tick()
    except Exception:  # a timer that raises is unregistered by Blender: keep ticking
        traceback.print_exc()
        busy = True
    return TICK_ACTIVE_S if busy or backend()["busy"] else TICK_IDLE_S


def background_export(scene, bundle: Path, settings, *, rgb_frames: bool = False,
                      redirect_camera: str = "") -> ExportProcess:
    """The shot export of ``scene`` to ``bundle`` in a child process (the main thread only saves a snapshot of the
    file; the job manager starts the process and reads its progress). ``rgb_frames``: render every frame too;
    ``redirect_camera``: also write that camera's w2c and K beside the bundle (:mod:`..export.redirect`).
    Raises RuntimeError when the snapshot fails."""
    frame_range = None if settings.use_scene_range else (settings.frame_start, settings.frame_end, scene.frame_step)
    options = ExportOptions(include_renders=True, include_rgb_frames=rgb_frames, frame_range=frame_range)
    if redirect_camera:
        return redirect.background_export(scene, bundle, options, redirect_camera)
    return export_process(scene, bundle, options)


def register():
    bpy.app.timers.register(_timer, first_interval=TICK_IDLE_S, persistent=True)


def unregister():
    if bpy.app.timers.is_registered(_timer):
        bpy.app.timers.unregister(_timer)
    manager.shutdown()
