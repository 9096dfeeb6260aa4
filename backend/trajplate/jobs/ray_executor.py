"""The scale-out executor: the same job API, run by Ray actors (one per GPU of the cluster, pipelines resident).

``trajplate serve --executor ray`` connects to ``--ray-address`` / ``$RAY_ADDRESS`` (a cluster started with
``ray start``; see docs/scale-out.md) or, with neither, starts a local Ray. GPU nodes share no disk with the server:
the bundle and the job's input files (a source video) travel with the call, and the actor streams events back through a Ray streaming generator — progress at
every step, then the result files — which the server writes into the job folder (temp name + rename). Cancel is an
actor method (the actor runs two calls at once) that sets the flag the step callback checks; the
:class:`~trajplate.pipelines.base.Cancelled` it raises skips decoding, as in the embedded worker.
"""

from __future__ import annotations

import os
import queue
import socket
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray
from ray.exceptions import RayError

from ..pipelines.base import Cancelled
from .executor import EventFn, Executor
from .runner import BUNDLE, DISK_FULL_ERRNOS, LOG, METADATA, VIDEO, JobSpec, PipelineCache, append_log, execute
from .worker import default_budget_bytes, device_name


class PipelineActor:
    """Lives on a GPU node (``num_gpus=1``: Ray sets CUDA_VISIBLE_DEVICES, so the device is ``cuda:0``)."""

    def __init__(self, index: int, budget_bytes: int | None):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        import torch

        self.index = index
        self.device = "cuda:0" if torch.cuda.is_available() else "cpu"
        self.cache = PipelineCache(budget_bytes if budget_bytes is not None else default_budget_bytes(self.device))
        self.cancel_flags: dict[str, threading.Event] = {}

    def info(self) -> dict[str, Any]:
        return {"device": self.device, "device_name": device_name(self.device), "node": socket.gethostname(),
                "pid": os.getpid()}

    def cancel(self, job_id: str) -> bool:
        flag = self.cancel_flags.get(job_id)
        if flag is not None:
            flag.set()
        return flag is not None

    def run(self, spec: JobSpec, bundle: bytes, input_files: dict[str, bytes]):
        """Generator of executor events (see :mod:`trajplate.jobs.executor`); the last one carries the result
        files (``files``: name → bytes) and the job's log lines. ``input_files``: name → bytes of the files the
        job has beside its bundle (``spec.input_files``)."""
        flag = self.cancel_flags.setdefault(spec.job_id, threading.Event())
        events: queue.Queue = queue.Queue()
        ended: dict[str, Any] = {}

        def progress(stage: str, step: int, steps: int) -> None:
            if flag.is_set():
                raise Cancelled()
            events.put({"type": "progress", "job_id": spec.job_id, "stage": stage, "step": step, "steps": steps})

        with tempfile.TemporaryDirectory(prefix="trajplate-job-") as tmp:
            job_dir = Path(tmp)
            (job_dir / BUNDLE).write_bytes(bundle)
            for name, data in input_files.items():
                (job_dir / name).write_bytes(data)

            def work() -> None:
                ended["outcome"] = execute(spec, job_dir, self.cache, progress, device=self.device)
                events.put(None)

            yield {"type": "started", "job_id": spec.job_id, "t": time.time()}
            thread = threading.Thread(target=work, name=f"job-{spec.job_id}")
            thread.start()
            while (event := events.get()) is not None:
                yield event
            thread.join()
            outcome = ended["outcome"]
            files = {n: (job_dir / n).read_bytes() for n in (VIDEO, METADATA) if outcome.state == "succeeded"}
            log = (job_dir / LOG).read_text(encoding="utf-8") if (job_dir / LOG).exists() else ""
        self.cancel_flags.pop(spec.job_id, None)
        yield {"type": "finished", "job_id": spec.job_id, "state": outcome.state, "error": outcome.error,
               "metadata": outcome.metadata, "files": files, "log": log}


@dataclass
class _Slot:
    index: int
    actor: Any
    ready: bool = False
    info: dict[str, Any] | None = None
    job_id: str | None = None


class RayExecutor(Executor):
    """Ray actors as workers. ``num_workers`` defaults to the cluster's GPU count (one CPU actor without GPUs)."""

    name = "ray"

    def __init__(self, data_dir: str | Path, *, address: str | None = None, budget_bytes: int | None = None,
                 num_workers: int | None = None):
        self.data_dir = Path(data_dir)
        self.address = address
        self.budget_bytes = budget_bytes
        self.num_workers = num_workers
        self._lock = threading.Lock()
        self._slots: list[_Slot] = []
        self._on_event: EventFn | None = None
        self._owns_ray = False

    def start(self, on_event: EventFn) -> None:
        self._on_event = on_event
        if not ray.is_initialized():
            ray.init(address=self.address, include_dashboard=False, log_to_driver=False)
            self._owns_ray = self.address is None
        gpus = int(ray.cluster_resources().get("GPU", 0))
        resources = {"num_gpus": 1} if gpus else {"num_cpus": 1}
        remote = ray.remote(PipelineActor).options(max_concurrency=2, max_restarts=3, **resources)
        with self._lock:
            self._slots = [_Slot(i, remote.remote(i, self.budget_bytes)) for i in range(self.num_workers or max(gpus, 1))]
        for slot in self._slots:
            threading.Thread(target=self._await_ready, args=(slot,), daemon=True).start()

    def _await_ready(self, slot: _Slot) -> None:
        try:
            info = ray.get(slot.actor.info.remote())
        except RayError:
            return  # the actor is gone for good (max_restarts spent); it stays not ready
        with self._lock:
            slot.ready, slot.info = True, info
        self._on_event({"type": "ready", "worker": slot.index, **info})

    def idle_slots(self) -> int:
        with self._lock:
            return sum(1 for s in self._slots if s.ready and s.job_id is None)

    def submit(self, spec: JobSpec, job_dir: Path) -> None:
        with self._lock:
            slot = next((s for s in self._slots if s.ready and s.job_id is None), None)
            if slot is None:
                raise RuntimeError("no idle Ray actor: call submit only when idle_slots() > 0")
            slot.job_id = spec.job_id
        inputs = {name: (job_dir / name).read_bytes() for name in spec.input_files}
        stream = slot.actor.run.options(num_returns="streaming").remote(spec, (job_dir / BUNDLE).read_bytes(), inputs)
        threading.Thread(target=self._follow, args=(slot, spec.job_id, job_dir, stream), daemon=True).start()

    def _follow(self, slot: _Slot, job_id: str, job_dir: Path, stream) -> None:
        try:
            for ref in stream:
                event = ray.get(ref)
                if event["type"] == "finished":
                    self._finish(slot, job_dir, event)
                    return
                self._on_event(event)
        except RayError as exc:
            with self._lock:
                slot.job_id, slot.ready = None, False
            threading.Thread(target=self._await_ready, args=(slot,), daemon=True).start()  # Ray restarts it
            self._on_event({"type": "finished", "job_id": job_id, "state": "failed", "metadata": {},
                            "error": f"Ray actor failed while running the job: {type(exc).__name__}: {exc}"})

    def _finish(self, slot: _Slot, job_dir: Path, event: dict[str, Any]) -> None:
        files, log = event.pop("files"), event.pop("log")
        try:
            with open(job_dir / LOG, "a", encoding="utf-8") as out:
                out.write(log)
            for name, data in files.items():  # video first, metadata last: metadata means "complete"
                tmp = job_dir / f".{name}.{os.getpid()}.part"
                try:
                    tmp.write_bytes(data)
                    os.replace(tmp, job_dir / name)
                finally:
                    tmp.unlink(missing_ok=True)
        except OSError as exc:
            reason = "disk full" if exc.errno in DISK_FULL_ERRNOS else type(exc).__name__
            event.update(state="failed", metadata={}, error=f"{reason} while writing the result: {exc}")
            try:
                append_log(job_dir, f"failed: {event['error']}")
            except OSError:
                pass
        with self._lock:
            slot.job_id = None
        self._on_event(event)

    def cancel(self, job_id: str) -> bool:
        with self._lock:
            slot = next((s for s in self._slots if s.job_id == job_id), None)
        if slot is None:
            return False
        slot.actor.cancel.remote(job_id)
        return True

    def shutdown(self) -> None:
        with self._lock:
            slots, self._slots = self._slots, []
        for slot in slots:
            ray.kill(slot.actor)
        if self._owns_ray:
            ray.shutdown()

    def info(self) -> dict[str, Any]:
        with self._lock:
            workers = [{"index": s.index, "ready": s.ready, "job_id": s.job_id, **(s.info or {})} for s in self._slots]
        gpus = [w["device_name"] for w in workers if str(w.get("device", "")).startswith("cuda")]
        return {"executor": self.name, "gpu": ", ".join(gpus) or None, "workers": workers}
