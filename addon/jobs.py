"""Job manager: the export in a child process, upload / progress / download in worker threads.

Threading contract (the common bug in the wild is a worker writing ``bpy`` data):

- Everything a worker needs is copied into a :class:`JobSpec` on the main thread when the job is queued; the
  export reads a snapshot of the file (:mod:`.export.background`) in another process.
- A worker (``_work``) never touches ``bpy``: it talks HTTP through :mod:`.client` and reports plain dicts
  through a ``queue.Queue``; cancel is a ``threading.Event`` that also makes the worker send
  ``DELETE /v1/jobs/{id}`` so the server stops too.
- :meth:`JobManager.tick` runs on the main thread (a ``bpy.app.timers`` callback in Blender; tests call it
  directly because timers never fire in the bpy module): it starts the next export process, reads its status,
  applies the workers' messages, and hands finished downloads to ``on_take`` (the sequencer import). Each call is
  short: one take import is the most work it does.
"""

from __future__ import annotations

import queue
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from .client import BackendError, Client, DownloadCancelled

TERMINAL = ("succeeded", "failed", "cancelled")
# Consecutive failed polls tolerated before a running job is reported as lost (the server keeps the job).
POLL_RETRIES = 3


@dataclass
class JobSpec:
    """A snapshot of everything one job needs, taken on the main thread when it is queued.

    ``scene``: the exported scene; ``sequencer_scene``: the scene whose sequencer gets the take (5.0 can show
    another scene's sequencer). ``params``: the JSON of ``trajplate.params.GenerateParams``. ``frame_start``/``frame_end``: the shot's
    Blender frame range (inclusive). ``takes_dir``: where the take is saved (absolute). ``source_video``: a take's
    movie file uploaded with the job (absolute), or None. ``redirect``: the .npz the export writes with the redirect
    camera (:mod:`.export.redirect`), sent as ``options.target_w2c`` / ``options.target_K``, or None.
    """

    scene: str
    sequencer_scene: str
    shot: str
    frame_start: int
    frame_end: int
    params: dict
    backend_url: str
    token: str
    takes_dir: Path
    timeout: float = 10.0
    download_timeout: float = 60.0
    poll_interval: float = 0.5
    bundle: Path | None = None
    source_video: Path | None = None
    redirect: Path | None = None


@dataclass
class Job:
    """One generation as the panel shows it. Only the main thread mutates it (through :meth:`JobManager.tick`)."""

    spec: JobSpec
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    client_job_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    state: str = "exporting"  # exporting, uploading, queued, running, downloading, importing + TERMINAL
    stage: str = ""
    step: int = 0
    steps: int = 0
    eta_s: float | None = None
    server_id: str | None = None
    server_state: str = ""
    error: str = ""
    video: Path | None = None
    metadata: dict | None = None
    strip: str = ""
    cancel: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    @property
    def active(self) -> bool:
        return self.state not in TERMINAL

    @property
    def label(self) -> str:
        p = self.spec.params
        return f"{p.get('pipeline', '?')} · seed {p.get('seed', 0)}"

    @property
    def fraction(self) -> float:
        """0..1 over the whole job (denoising dominates), for progress bars."""
        if self.state == "succeeded":
            return 1.0
        if self.state == "exporting":
            return 0.05 * self.step / 100
        if self.state in ("downloading", "importing"):
            return 0.97
        if self.stage == "denoising" and self.steps:
            return 0.1 + 0.8 * self.step / self.steps
        return {"loading": 0.06, "conditioning": 0.08, "decoding": 0.9, "encoding": 0.95}.get(self.stage, 0.05)

    @property
    def status_line(self) -> str:
        """One line: 'denoising 12/25 · ETA 40 s', 'exporting 40%', or the error."""
        if self.state == "failed":
            return self.error
        if self.state == "exporting":
            return f"exporting {self.step}%" + (f" · {self.stage}" if self.stage else "")
        if self.state in ("running", "queued") and self.stage:
            text = self.stage
            if self.steps:
                text += f" {self.step}/{self.steps}"
            if self.eta_s is not None:
                text += f" · ETA {self.eta_s:.0f} s"
            return text
        return self.state


class ExportRun(Protocol):
    """What the manager needs of an export (:class:`.export.process.ExportProcess`): it writes ``bundle``;
    ``status()`` has ``state`` (running | succeeded | failed | cancelled), ``fraction``, ``stage``, ``error`` and
    ``warnings``; ``start``, ``cancel`` and ``join`` never block the main thread (``join`` waits up to its timeout)."""

    bundle: Path
    started: bool

    def start(self) -> None: ...

    def status(self): ...

    def cancel(self) -> None: ...

    def join(self, timeout: float | None = None) -> None: ...


@dataclass
class Export:
    """The export shared by the jobs of one Generate click (one bundle, N seeds)."""

    run: ExportRun
    jobs: list[Job]

    @property
    def bundle(self) -> Path:
        return self.run.bundle


def redirect_params(params: dict, path: Path) -> dict:
    """``params`` with ``options.target_w2c`` ((F, 4, 4) world-to-camera, OpenCV axes, metres) and
    ``options.target_K`` ((F, 3, 3) pixels) of the redirect camera file at ``path``, as JSON lists (float64 values
    survive JSON exactly)."""
    with np.load(path) as arrays:
        target = {"target_w2c": arrays["camera_w2c_opencv"].tolist(), "target_K": arrays["intrinsics"].tolist()}
    return {**params, "options": {**(params.get("options") or {}), **target}}


def _work(job_id: str, spec: JobSpec, server_id: str | None, client_job_id: str, cancel: threading.Event,
          post: Callable[[str, dict], None]) -> None:
    """Worker thread: submit (unless ``server_id`` is known), poll, download. Never touches ``bpy``."""
    client = Client(spec.backend_url, spec.token, spec.timeout, spec.download_timeout)
    try:
        if server_id is None:
            post(job_id, {"state": "uploading"})
            params = spec.params if spec.redirect is None else redirect_params(spec.params, spec.redirect)
            server_id = client.submit(spec.bundle, params, client_job_id, source_video=spec.source_video)
            post(job_id, {"server_id": server_id, "state": "queued"})
        cancel_sent = False
        failures = 0
        while True:
            if cancel.is_set() and not cancel_sent:
                client.cancel(server_id)
                cancel_sent = True
            try:
                status = client.job(server_id)
                failures = 0
            except BackendError:
                failures += 1
                if failures > POLL_RETRIES or cancel_sent:
                    raise
                time.sleep(spec.poll_interval)
                continue
            state = status.get("state", "")
            progress = status.get("progress") or {}
            update = {"server_state": state, "stage": progress.get("stage", ""), "step": progress.get("step") or 0,
                      "steps": progress.get("steps") or 0, "eta_s": progress.get("eta_s")}
            if state in ("queued", "running"):
                update["state"] = state
            post(job_id, update)
            if state == "succeeded":
                break
            if state == "cancelled":
                post(job_id, {"state": "cancelled"})
                return
            if state == "failed":
                post(job_id, {"state": "failed", "error": f"Backend: {status.get('error') or 'the job failed'}"})
                return
            cancel.wait(spec.poll_interval)
        if cancel.is_set():
            post(job_id, {"state": "cancelled"})
            return
        post(job_id, {"state": "downloading"})
        metadata = client.metadata(server_id)
        spec.takes_dir.mkdir(parents=True, exist_ok=True)
        video = client.download_video(server_id, spec.takes_dir / f".{job_id}.mp4", cancel.is_set)
        post(job_id, {"state": "importing", "video": video, "metadata": metadata})
    except DownloadCancelled:
        post(job_id, {"state": "cancelled"})
    except BackendError as exc:
        print(f"TrajPlate job {job_id}: {exc.detail}")
        post(job_id, {"state": "failed", "error": exc.line})
    except Exception as exc:  # a worker must always report back, or the job hangs in the panel
        traceback.print_exc()
        post(job_id, {"state": "failed", "error": f"Unexpected error: {exc}"})


class JobManager:
    """Owns the jobs of this Blender session.

    ``on_take(job) -> strip name``: main-thread import of a downloaded take (raises to fail the job).
    ``on_change()``: called after a tick that changed anything (redraw the panels).
    ``on_error(job)``: called once when a job fails (report it to the artist).
    """

    def __init__(self, on_take: Callable[[Job], str], on_change: Callable[[], None] = lambda: None,
                 on_error: Callable[[Job], None] = lambda job: None):
        self.jobs: list[Job] = []
        self.exports: list[Export] = []
        self.on_take = on_take
        self.on_change = on_change
        self.on_error = on_error
        self._messages: queue.SimpleQueue[tuple[str, dict]] = queue.SimpleQueue()

    # -- main thread --------------------------------------------------------------------------------------

    def queue(self, specs: list[JobSpec], export: ExportRun) -> list[Job]:
        """Queue one job per spec behind one export (started by ``tick``, one export at a time); returns the jobs
        (state 'exporting')."""
        jobs = [Job(spec) for spec in specs]
        self.jobs.extend(jobs)
        self.exports.append(Export(export, jobs))
        self.on_change()
        return jobs

    def get(self, job_id: str) -> Job | None:
        return next((j for j in self.jobs if j.id == job_id), None)

    @property
    def busy(self) -> bool:
        return any(job.active for job in self.jobs)

    def cancel(self, job: Job) -> None:
        """Stop ``job``: a job still exporting stops at once; a running one is cancelled on the server too."""
        job.cancel.set()
        if job.state == "exporting":
            job.state = "cancelled"
        self.on_change()

    def retry(self, job: Job) -> None:
        """Run a failed or cancelled job again. A job the server finished is only downloaded again; one the server
        never got is resubmitted with the same client job id (idempotent); one that failed there gets a new job."""
        if job.active:
            return
        if job.spec.bundle is None:
            raise ValueError("this job never finished its export; press Generate again")
        if job.server_state in ("failed", "cancelled"):
            job.server_id, job.server_state, job.client_job_id = None, "", uuid.uuid4().hex
        job.cancel = threading.Event()
        job.error, job.stage, job.step, job.steps, job.eta_s = "", "", 0, 0, None
        self._start(job)

    def tick(self) -> bool:
        """Advance everything by one short main-thread slice. Returns True while any job is active."""
        changed = self._advance_export()
        while True:
            try:
                job_id, update = self._messages.get_nowait()
            except queue.Empty:
                break
            job = self.get(job_id)
            if job is None:
                continue
            changed = True
            self._apply(job, update)
        if changed:
            self.on_change()
        return self.busy

    def clear_finished(self) -> None:
        """Forget finished jobs and delete the bundles no remaining job needs."""
        done = [job for job in self.jobs if not job.active]
        self.jobs = [job for job in self.jobs if job.active]
        self._delete_bundles(done)
        self.on_change()

    def shutdown(self, join_s: float = 2.0) -> None:
        """Cancel every active job (server side too) and wait briefly for the workers (add-on unregister)."""
        for job in self.jobs:
            job.cancel.set()
        for export in self.exports:
            export.run.cancel()
        deadline = time.monotonic() + join_s
        for export in self.exports:
            export.run.join(max(0.0, deadline - time.monotonic()))
        for job in self.jobs:
            if job.thread is not None:
                job.thread.join(max(0.0, deadline - time.monotonic()))
        done, self.jobs = self.jobs, []
        self.exports.clear()
        self._delete_bundles(done)

    def _delete_bundles(self, done: list[Job]) -> None:
        """Delete the bundles (and redirect camera files) that only ``done`` jobs used."""
        needed = {job.spec.bundle for job in self.jobs} | {e.bundle for e in self.exports}
        for bundle in {job.spec.bundle for job in done} - needed - {None}:
            bundle.unlink(missing_ok=True)
        needed = {job.spec.redirect for job in self.jobs}
        for redirect in {job.spec.redirect for job in done} - needed - {None}:
            redirect.unlink(missing_ok=True)

    # -- internals ----------------------------------------------------------------------------------------

    def _start(self, job: Job) -> None:
        job.state = "uploading" if job.server_id is None else "queued"
        job.thread = threading.Thread(
            target=_work, name=f"trajplate-job-{job.id}", daemon=True,
            args=(job.id, job.spec, job.server_id, job.client_job_id, job.cancel,
                  lambda jid, upd: self._messages.put((jid, upd))))
        job.thread.start()

    def _advance_export(self) -> bool:
        """Start the first queued export, or read its status: a few attribute reads, never a wait."""
        if not self.exports:
            return False
        export = self.exports[0]
        pending = [job for job in export.jobs if not job.cancel.is_set()]
        if not pending:
            export.run.cancel()  # every job of this export was cancelled: stop the child process
            self.exports.pop(0)
            return True
        if not export.run.started:
            export.run.start()
        status = export.run.status()
        if status.state == "running":
            percent = int(100 * status.fraction)
            changed = any((job.step, job.stage) != (percent, status.stage) for job in pending)
            for job in pending:
                job.step, job.stage = percent, status.stage
            return changed
        self.exports.pop(0)
        for warning in status.warnings:
            print(f"TrajPlate export: {warning}")
        for job in pending:
            if status.state == "succeeded":
                job.spec.bundle = export.bundle
                job.stage = ""
                self._start(job)
            elif status.state == "cancelled":
                job.state = "cancelled"
            else:  # the message names the field and the fix; the detail went to the console
                self._fail(job, f"Export failed: {status.error}")
        return True

    def _apply(self, job: Job, update: dict) -> None:
        if job.state in TERMINAL and update.get("state") not in TERMINAL:
            if update.get("video") is not None:
                update["video"].unlink(missing_ok=True)  # downloaded after the artist cancelled
            return  # a late progress message after cancel
        for key, value in update.items():
            setattr(job, key, value)
        if job.state == "failed":
            self.on_error(job)
        elif job.state == "importing":
            try:
                job.strip = self.on_take(job)
                job.state = "succeeded"
            except Exception as exc:
                traceback.print_exc()
                if job.video is not None:
                    job.video.unlink(missing_ok=True)
                self._fail(job, f"Import failed: {exc}")

    def _fail(self, job: Job, line: str) -> None:
        job.state, job.error = "failed", line
        self.on_error(job)

