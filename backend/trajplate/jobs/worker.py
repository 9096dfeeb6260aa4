"""The embedded worker process: one per GPU (or one on the CPU), pipelines kept resident between jobs.

Started with the ``spawn`` context (CUDA is not fork-safe). It reads job specs from its task pipe, runs them with
:func:`trajplate.jobs.runner.execute` and writes events to its event pipe. Cancel is a shared Event checked at every
progress call, i.e. in the diffusers step callback; the :class:`Cancelled` it raises skips decoding. A worker whose
server died (pipe closed or re-parented) stops at the next step instead of finishing an orphaned job.
"""

from __future__ import annotations

import os
import time
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Event
from pathlib import Path

from ..pipelines.base import Cancelled
from .runner import JobSpec, PipelineCache, execute


def default_budget_bytes(device: str) -> int:
    """90 % of the GPU's memory, or half the machine's RAM on the CPU."""
    if device.startswith("cuda"):
        import torch

        return int(torch.cuda.get_device_properties(torch.device(device)).total_memory * 0.9)
    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") * 0.5)


def device_name(device: str) -> str:
    """The GPU's name (imports torch), or ``cpu`` (a CPU worker imports torch with its first pipeline)."""
    if device.startswith("cuda"):
        import torch

        return torch.cuda.get_device_name(torch.device(device))
    return "cpu"


def worker_main(
    index: int, device: str, tasks: Connection, events: Connection, cancel: Event, data_dir: str,
    budget_bytes: int | None,
) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # serving never downloads (read at huggingface_hub import)
    parent = os.getppid()

    def send(event: dict) -> None:
        try:
            events.send(event)
        except OSError:  # the server is gone: stop now, whatever we are in the middle of
            raise SystemExit(0) from None

    cache = PipelineCache(budget_bytes if budget_bytes is not None else default_budget_bytes(device))
    send({"type": "ready", "worker": index, "device": device, "device_name": device_name(device), "pid": os.getpid()})
    while True:
        try:
            spec: JobSpec | None = tasks.recv()
        except (EOFError, OSError):
            return
        if spec is None:
            return
        send({"type": "started", "job_id": spec.job_id, "t": time.time()})

        def progress(stage: str, step: int, steps: int, job_id: str = spec.job_id) -> None:
            if cancel.is_set() or os.getppid() != parent:
                raise Cancelled()
            send({"type": "progress", "job_id": job_id, "stage": stage, "step": step, "steps": steps})

        outcome = execute(spec, Path(data_dir) / "jobs" / spec.job_id, cache, progress, device=device)
        send({"type": "finished", "job_id": spec.job_id, "state": outcome.state, "error": outcome.error,
              "metadata": outcome.metadata})
