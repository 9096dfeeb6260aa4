"""The job service: the store, an executor, live progress and the dispatcher, behind one object the server uses.

Dispatch is event driven: a submit, a worker becoming ready and a job finishing each hand queued jobs (highest
priority first, then oldest) to idle workers. Progress lives in memory (it is worthless after a restart); state
changes go to the store first and then to subscribers (Server-Sent Events), so what a client sees is never ahead of
what survives a crash.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from ..pipelines.base import STAGES
from .executor import Executor
from .runner import METADATA, JobSpec, append_log
from .store import TERMINAL, JobRecord, JobStore

Stage = Literal["queued", "loading", "conditioning", "denoising", "decoding", "encoding"]
assert set(Stage.__args__) == set(STAGES)


class Progress(BaseModel):
    """Where a job is. ``step``/``steps`` count denoising steps (0/0 outside a counted stage); ``eta_s`` is the
    estimated seconds until denoising ends, from the mean step time so far (None before the first step)."""

    stage: Stage = "queued"
    step: int = 0
    steps: int = 0
    eta_s: float | None = None


class JobView(BaseModel):
    """A job as the API shows it (``GET /v1/jobs/{id}`` and every SSE event). Times are Unix seconds."""

    id: str
    client_job_id: str | None = None
    pipeline: str
    state: Literal["queued", "running", "succeeded", "failed", "cancelled"]
    progress: Progress
    error: str | None = None
    priority: int = 0
    attempts: int = 0
    bundle_sha256: str
    input_files: dict[str, str] = Field(
        default_factory=dict, description="files attached beyond the bundle, by form field → sha256; "
                                          "e.g. {\"source_video\": ...} when a take travels with the job")
    created_at: float
    started_at: float | None = None
    finished_at: float | None = None
    tiny: bool | None = Field(None, description="true when the result was made with tiny random weights")
    video_url: str | None = None
    metadata_url: str | None = None


RETRY_AFTER_S = 5


class QueueFull(Exception):
    """More jobs are queued than the server accepts; retry after ``retry_after_s``."""

    def __init__(self, queued: int, retry_after_s: int):
        super().__init__(f"the queue is full ({queued} jobs waiting); retry in {retry_after_s} s")
        self.retry_after_s = retry_after_s


class JobService:
    """Jobs on ``store`` run by ``executor``; at most ``max_queue`` jobs wait at once (more get :class:`QueueFull`)."""

    def __init__(self, store: JobStore, executor: Executor, *, max_queue: int = 100, allow_tiny: bool = True):
        self.store = store
        self.executor = executor
        self.max_queue = max_queue
        self.allow_tiny = allow_tiny
        self._lock = threading.RLock()
        self._progress: dict[str, Progress] = {}
        self._denoise_start: dict[str, tuple[float, int]] = {}
        self._tiny: dict[str, bool] = {}
        self._subscribers: dict[str, set[tuple[asyncio.AbstractEventLoop, asyncio.Queue]]] = {}
        self.started_at: dict[str, float] = {}  # job id -> Unix time its worker picked it up (for the benchmark)

    # -- lifecycle ---------------------------------------------------------------------------------------------

    def start(self) -> tuple[list[str], list[str]]:
        """Recover jobs left running by a crash, start the executor; returns (requeued, failed) ids."""
        requeued, failed = self.store.recover()
        for job_id in requeued:
            self._log(job_id, "server restarted while the job was running: re-queued")
        for job_id in failed:
            self._log(job_id, "server restarted while the job was running again: failed (interrupted)")
        self.executor.start(self._on_event)
        return requeued, failed

    def shutdown(self) -> None:
        self.executor.shutdown()

    # -- submit / cancel / read --------------------------------------------------------------------------------

    def check_capacity(self) -> None:
        """Raise :class:`QueueFull` when no more jobs may wait."""
        queued = self.store.count("queued")
        if queued >= self.max_queue:
            raise QueueFull(queued, retry_after_s=RETRY_AFTER_S)

    def submit(self, job_id: str, *, pipeline: str, params: dict[str, Any], bundle_sha256: str,
               input_files: dict[str, str] | None = None, priority: int = 0,
               client_job_id: str | None = None) -> tuple[JobRecord, bool]:
        """Store a queued job whose folder (bundle, input files, params) is already in place and dispatch;
        (record, created)."""
        record, created = self.store.create(job_id, pipeline=pipeline, params=params, bundle_sha256=bundle_sha256,
                                            input_files=input_files, priority=priority, client_job_id=client_job_id)
        if created:
            self._publish(job_id)
            self._dispatch()
        return record, created

    def cancel(self, job_id: str) -> JobRecord | None:
        """Cancel a queued job at once, or ask the worker of a running one to stop at its next step."""
        record = self.store.get(job_id)
        if record is None:
            return None
        if record.state == "queued" and self.store.cancel_if_queued(job_id):
            self._log(job_id, "cancelled while queued")
            self._publish(job_id)
        elif record.state == "running":
            self.executor.cancel(job_id)
        return self.store.get(job_id)

    def view(self, record: JobRecord) -> JobView:
        with self._lock:
            progress = self._progress.get(record.id, Progress()).model_copy()
            tiny = self._tiny.get(record.id)
        succeeded = record.state == "succeeded"
        if succeeded and tiny is None:  # after a restart: the flag is in the result's metadata
            try:
                tiny = bool(json.loads((self.store.job_dir(record.id) / METADATA).read_text())["tiny"])
            except (OSError, ValueError, KeyError):
                tiny = None
            with self._lock:
                self._tiny[record.id] = tiny
        return JobView(
            id=record.id, client_job_id=record.client_job_id, pipeline=record.pipeline, state=record.state,
            progress=progress, error=record.error, priority=record.priority, attempts=record.attempts,
            bundle_sha256=record.bundle_sha256, input_files=record.input_files, created_at=record.created_at,
            started_at=record.started_at,
            finished_at=record.finished_at, tiny=tiny,
            video_url=f"/v1/jobs/{record.id}/video" if succeeded else None,
            metadata_url=f"/v1/jobs/{record.id}/metadata" if succeeded else None,
        )

    def get(self, job_id: str) -> JobView | None:
        record = self.store.get(job_id)
        return None if record is None else self.view(record)

    def result_path(self, job_id: str, name: str) -> Path | None:
        """The result file ``name`` (``video.mp4`` or ``metadata.json``) of a succeeded job, else None."""
        record = self.store.get(job_id)
        if record is None or record.state != "succeeded":
            return None
        path = self.store.job_dir(job_id) / name
        return path if path.is_file() else None

    # -- subscriptions (SSE) -----------------------------------------------------------------------------------

    def subscribe(self, job_id: str) -> asyncio.Queue:
        """A queue that receives every later :class:`JobView` of ``job_id``; call from the event loop."""
        queue: asyncio.Queue = asyncio.Queue()
        with self._lock:
            self._subscribers.setdefault(job_id, set()).add((asyncio.get_running_loop(), queue))
        return queue

    def unsubscribe(self, job_id: str, queue: asyncio.Queue) -> None:
        with self._lock:
            subs = self._subscribers.get(job_id, set())
            subs.difference_update({s for s in subs if s[1] is queue})
            if not subs:
                self._subscribers.pop(job_id, None)

    def _publish(self, job_id: str) -> None:
        with self._lock:
            subs = list(self._subscribers.get(job_id, ()))
        if not subs:
            return
        view = self.get(job_id)
        for loop, queue in subs:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, view)
            except RuntimeError:  # that client's loop is closed
                pass

    # -- dispatch and executor events -----------------------------------------------------------------------

    def _dispatch(self) -> None:
        with self._lock:
            while self.executor.idle_slots() > 0:
                record = self.store.claim_next()
                if record is None:
                    return
                self._progress[record.id] = Progress(stage="loading")
                spec = JobSpec(job_id=record.id, params=record.params, preset=self._preset(record),
                               bundle_sha256=record.bundle_sha256, allow_tiny=self.allow_tiny,
                               input_files=record.input_files)
                try:
                    self.executor.submit(spec, self.store.job_dir(record.id))
                except Exception as exc:  # noqa: BLE001 - the job fails, the server keeps going
                    self.store.finish(record.id, "failed", f"could not start the job: {exc}")
                self._publish(record.id)

    @staticmethod
    def _preset(record: JobRecord) -> dict[str, Any]:
        from .catalog import preset_for

        return preset_for(record.pipeline).model_dump(mode="json")

    def _on_event(self, event: dict[str, Any]) -> None:
        kind, job_id = event["type"], event.get("job_id")
        if kind == "started":
            self.started_at[job_id] = event["t"]
        elif kind == "progress":
            self._progress_event(job_id, event["stage"], event["step"], event["steps"])
        elif kind == "finished":
            with self._lock:
                if event["state"] == "succeeded":
                    self._tiny[job_id] = bool(event["metadata"].get("tiny"))
                self._denoise_start.pop(job_id, None)
            self.store.finish(job_id, event["state"], event.get("error"))
        if kind in ("progress", "finished"):
            self._publish(job_id)
        if kind in ("ready", "finished"):
            self._dispatch()

    def _progress_event(self, job_id: str, stage: str, step: int, steps: int) -> None:
        now = time.monotonic()
        with self._lock:
            eta = None
            if stage == "denoising" and steps:
                start = self._denoise_start.setdefault(job_id, (now, step))
                done = step - start[1]
                if done > 0:
                    eta = round((now - start[0]) / done * (steps - step), 3)
            self._progress[job_id] = Progress(stage=stage, step=step, steps=steps, eta_s=eta)

    def _log(self, job_id: str, message: str) -> None:
        job_dir = self.store.job_dir(job_id)
        if job_dir.is_dir():
            append_log(job_dir, message)

    # -- health ------------------------------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        info = self.executor.info()
        return {"queue_length": self.store.count("queued"), "running": self.store.count("running"), **info}


def is_terminal(view: JobView) -> bool:
    return view.state in TERMINAL

