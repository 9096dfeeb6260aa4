"""The default executor: one spawned worker process per GPU beside the server (one CPU worker without a GPU).

Each worker has a task pipe (server → worker), an event pipe (worker → server) and a cancel Event. One reader thread
waits on every event pipe and every process sentinel at once, so events arrive without polling and a worker that
dies (out of memory, segfault in a kernel) fails its job with the exit code and is replaced by a fresh process.
"""

from __future__ import annotations

import multiprocessing as mp
import threading
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

from .executor import EventFn, Executor
from .runner import JobSpec
from .worker import worker_main


def visible_devices() -> list[str]:
    """``cuda:<i>`` for every visible GPU, else ``["cpu"]``."""
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return [f"cuda:{i}" for i in range(count)] or ["cpu"]


@dataclass
class _Worker:
    index: int
    device: str
    process: Any = None
    tasks: Connection | None = None
    events: Connection | None = None
    cancel: Any = None
    ready: bool = False
    device_name: str | None = None
    job_id: str | None = None
    jobs_done: int = field(default=0)


class EmbeddedExecutor(Executor):
    """Worker processes on this machine. ``devices`` defaults to :func:`visible_devices`; ``budget_bytes`` is each
    worker's resident-pipeline budget (default: 90 % of the GPU, half the RAM on the CPU)."""

    name = "embedded"

    def __init__(self, data_dir: str | Path, *, devices: list[str] | None = None, budget_bytes: int | None = None):
        self.data_dir = str(data_dir)
        self.devices = devices or visible_devices()
        self.budget_bytes = budget_bytes
        self._ctx = mp.get_context("spawn")
        self._lock = threading.Lock()
        self._workers = [_Worker(i, d) for i, d in enumerate(self.devices)]
        self._on_event: EventFn | None = None
        self._stopping = False
        self._reader: threading.Thread | None = None

    def _spawn(self, worker: _Worker) -> None:
        task_recv, task_send = self._ctx.Pipe(duplex=False)
        event_recv, event_send = self._ctx.Pipe(duplex=False)
        worker.cancel = self._ctx.Event()
        worker.process = self._ctx.Process(
            target=worker_main, name=f"trajplate-worker-{worker.index}", daemon=True,
            args=(worker.index, worker.device, task_recv, event_send, worker.cancel, self.data_dir, self.budget_bytes),
        )
        worker.process.start()
        task_recv.close()
        event_send.close()
        worker.tasks, worker.events, worker.ready, worker.job_id = task_send, event_recv, False, None

    def start(self, on_event: EventFn) -> None:
        self._on_event = on_event
        for worker in self._workers:
            self._spawn(worker)
        self._reader = threading.Thread(target=self._read_events, name="trajplate-executor-events", daemon=True)
        self._reader.start()

    def _read_events(self) -> None:
        while not self._stopping:
            with self._lock:
                by_conn = {w.events: w for w in self._workers}
                by_sentinel = {w.process.sentinel: w for w in self._workers}
            for ready in wait([*by_conn, *by_sentinel], timeout=1.0):
                if ready in by_conn:
                    self._drain(by_conn[ready])
                elif not self._stopping:
                    self._drain(by_sentinel[ready])  # events written just before death come first
                    self._replace_dead(by_sentinel[ready])

    def _drain(self, worker: _Worker) -> None:
        while True:
            try:
                if not worker.events.poll():
                    return
                event = worker.events.recv()
            except (EOFError, OSError):
                return
            with self._lock:
                if event["type"] == "ready":
                    worker.ready, worker.device_name = True, event["device_name"]
                elif event["type"] == "finished":
                    worker.job_id = None
                    worker.jobs_done += 1
            self._on_event(event)

    def _replace_dead(self, worker: _Worker) -> None:
        with self._lock:
            worker.process.join(timeout=5)  # the sentinel fires at exit; exitcode is set once joined
            job_id, code = worker.job_id, worker.process.exitcode
            for conn in (worker.tasks, worker.events):
                conn.close()
            self._spawn(worker)
        if job_id is not None:
            self._on_event({"type": "finished", "job_id": job_id, "state": "failed", "metadata": {},
                            "error": f"worker process died (exit code {code}) while running the job"})

    def idle_slots(self) -> int:
        with self._lock:
            return sum(1 for w in self._workers if w.ready and w.job_id is None)

    def submit(self, spec: JobSpec, job_dir: Path) -> None:
        with self._lock:
            worker = next((w for w in self._workers if w.ready and w.job_id is None), None)
            if worker is None:
                raise RuntimeError("no idle worker: call submit only when idle_slots() > 0")
            worker.job_id = spec.job_id
            worker.cancel.clear()
            worker.tasks.send(spec)

    def cancel(self, job_id: str) -> bool:
        with self._lock:
            for worker in self._workers:
                if worker.job_id == job_id:
                    worker.cancel.set()
                    return True
        return False

    def shutdown(self) -> None:
        self._stopping = True
        with self._lock:
            for worker in self._workers:
                worker.cancel.set()  # a running job stops at its next step
                try:
                    worker.tasks.send(None)
                except OSError:
                    pass
        for worker in self._workers:
            worker.process.join(timeout=10)
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join()
            worker.tasks.close()
            worker.events.close()
            worker.cancel = None  # its 5 named semaphores are unlinked now, not reported leaked at exit
        if self._reader is not None:
            self._reader.join(timeout=5)

    def info(self) -> dict[str, Any]:
        with self._lock:
            workers = [{"index": w.index, "device": w.device, "device_name": w.device_name, "ready": w.ready,
                        "job_id": w.job_id, "pid": w.process.pid if w.process else None, "jobs_done": w.jobs_done}
                       for w in self._workers]
        gpus = [w["device_name"] for w in workers if w["device"].startswith("cuda") and w["device_name"]]
        return {"executor": self.name, "gpu": ", ".join(gpus) or None, "workers": workers}
