"""The interface both executors implement (embedded worker processes, Ray actors).

An executor runs :class:`~trajplate.jobs.runner.JobSpec` s on its workers, one job at a time per worker, and reports
back through ``on_event(event)`` from its own thread. Events are dicts with a ``type``:

- ``ready``: a worker can take a job (``worker``, ``device``, ``device_name``)
- ``started``: ``job_id``, ``t`` (Unix time the worker picked the job up)
- ``progress``: ``job_id``, ``stage``, ``step``, ``steps``
- ``finished``: ``job_id``, ``state`` (succeeded | failed | cancelled), ``error``, ``metadata``; the result files are
  in the job folder by then, and the worker counts as idle again.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

from .runner import JobSpec

EventFn = Callable[[dict[str, Any]], None]


class Executor(ABC):
    name: ClassVar[str]

    @abstractmethod
    def start(self, on_event: EventFn) -> None:
        """Start the workers; events flow to ``on_event`` until :meth:`shutdown`."""

    @abstractmethod
    def idle_slots(self) -> int:
        """How many workers are ready and without a job now."""

    @abstractmethod
    def submit(self, spec: JobSpec, job_dir: Path) -> None:
        """Hand ``spec`` to an idle worker (call only when :meth:`idle_slots` > 0). The bundle is in ``job_dir``."""

    @abstractmethod
    def cancel(self, job_id: str) -> bool:
        """Ask the worker running ``job_id`` to stop at its next step; False when no worker runs it."""

    @abstractmethod
    def shutdown(self) -> None:
        """Stop every worker and release what was started (processes, Ray actors)."""

    @abstractmethod
    def info(self) -> dict[str, Any]:
        """``{"executor": name, "gpu": name or None, "workers": [...]}`` for the health endpoint."""
