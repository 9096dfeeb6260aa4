"""The shot export in a child process, driven from a worker thread: Blender's main thread never waits for it.

The child (:mod:`.runner`, in a background Blender or a Python with the bpy module) prints protocol lines
``TRAJPLATE {json}`` on stdout: ``{"progress": [done, total, stage]}``, ``{"warning": text}``, ``{"error": text}``
(an ExportError message: one line naming the object or setting and the fix) and ``{"done": {...}}``. Everything else
it prints (Blender and Cycles logs) is kept as detail for the console. No bpy here: :class:`ExportProcess` is polled
from the main thread and its thread only reads a pipe.
"""

from __future__ import annotations

import collections
import json
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

PREFIX = "TRAJPLATE "
TERMINATE_GRACE_S = 5.0
DETAIL_LINES = 60


@dataclass
class ExportStatus:
    """What the main thread reads: ``state`` running | succeeded | failed | cancelled; ``done``/``total`` progress
    units of the export and its ``stage``; ``error`` one line for the artist; ``warnings`` from the export."""

    state: str = "running"
    done: int = 0
    total: int = 0
    stage: str = "starting"
    error: str = ""
    warnings: list = field(default_factory=list)

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else 0.0


class ExportProcess:
    """Run ``argv`` (a :mod:`.runner` command line that writes ``bundle``) in a child process.

    ``start`` launches it from a daemon thread; ``status`` is a snapshot safe to read from any thread; ``cancel``
    terminates the child (the bundle writer is atomic, so no bundle appears) and returns at once. ``cleanup``: files
    deleted when the child ends, whatever the outcome (the snapshot .blend); on failure or cancel, the bundle and the
    writer's hidden temporary file next to it are deleted too.
    """

    def __init__(self, argv: list[str], bundle: Path, cleanup: tuple[Path, ...] = ()):
        self.argv = argv
        self.bundle = Path(bundle)
        self.cleanup = cleanup
        self._status = ExportStatus()
        self._lock = threading.Lock()
        self._cancel = threading.Event()
        self._proc: subprocess.Popen | None = None
        self._thread: threading.Thread | None = None
        self.detail: collections.deque[str] = collections.deque(maxlen=DETAIL_LINES)

    @property
    def started(self) -> bool:
        return self._thread is not None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="trajplate-export", daemon=True)
        self._thread.start()

    def status(self) -> ExportStatus:
        with self._lock:
            return ExportStatus(**{**self._status.__dict__, "warnings": list(self._status.warnings)})

    def cancel(self) -> None:
        self._cancel.set()
        with self._lock:
            proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.terminate()
        if self._thread is None:  # never started: nothing else will clean up
            self._finish("cancelled", "")

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    # -- worker thread ------------------------------------------------------------------------------------

    def _update(self, **values) -> None:
        with self._lock:
            for key, value in values.items():
                setattr(self._status, key, value)

    def _run(self) -> None:
        try:
            with self._lock:
                if self._cancel.is_set():
                    raise _Cancelled
                # stderr joins stdout so one reader sees everything in order; the child flushes its protocol lines.
                self._proc = subprocess.Popen(self.argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                              stdin=subprocess.DEVNULL, text=True, encoding="utf-8",
                                              errors="replace", bufsize=1)
            error, result = "", None
            for line in self._proc.stdout:
                message = _parse(line)
                if message is None:
                    self.detail.append(line.rstrip("\n"))
                elif "progress" in message:
                    done, total, stage = message["progress"]
                    self._update(done=done, total=total, stage=stage)
                elif "warning" in message:
                    with self._lock:
                        self._status.warnings.append(message["warning"])
                elif "error" in message:
                    error = message["error"]
                elif "done" in message:
                    result = message["done"]
            code = self._wait()
            if self._cancel.is_set():
                self._finish("cancelled", "")
            elif code == 0 and result is not None and self.bundle.is_file():
                self._finish("succeeded", "")
            else:
                self._finish("failed", error or f"the export process ended with exit code {code} "
                                                "(details in the system console)", show_detail=not error)
        except _Cancelled:
            self._finish("cancelled", "")
        except OSError as exc:
            self._finish("failed", f"could not start the export process {self.argv[0]!r}: {exc}")

    def _wait(self) -> int:
        try:
            return self._proc.wait(TERMINATE_GRACE_S if self._cancel.is_set() else None)
        except subprocess.TimeoutExpired:  # terminate was ignored (a render that does not poll signals)
            self._proc.kill()
            return self._proc.wait()

    def _finish(self, state: str, error: str, show_detail: bool = False) -> None:
        if state != "succeeded":
            self.bundle.unlink(missing_ok=True)
            for tmp in self.bundle.parent.glob(f".{self.bundle.name}.*.tmp"):
                tmp.unlink(missing_ok=True)
        for path in self.cleanup:
            Path(path).unlink(missing_ok=True)
        if state == "failed":
            print(f"TrajPlate export failed: {error}", file=sys.stderr)
            if show_detail:
                print("\n".join(self.detail), file=sys.stderr)
        self._update(state=state, error=error)


class _Cancelled(Exception):
    pass


def _parse(line: str) -> dict | None:
    """The protocol message of a child output line, or None for any other line."""
    if not line.startswith(PREFIX):
        return None
    try:
        message = json.loads(line[len(PREFIX):])
    except json.JSONDecodeError:
        return None
    return message if isinstance(message, dict) else None
