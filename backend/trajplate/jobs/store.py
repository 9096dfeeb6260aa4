"""Persistent job store: SQLite (WAL) under the data directory, one folder per job.

Layout of ``<data_dir>``::

    jobs.sqlite3            the job table (WAL journal: readers never block the writer)
    jobs/<id>/bundle.zip    the uploaded shot bundle
    jobs/<id>/params.json   the GenerateParams as submitted
    jobs/<id>/source_video  an attached input file, named by its form field (only when the job has one)
    jobs/<id>/job.log       stage transitions and errors, appended by whoever runs the job
    jobs/<id>/video.mp4     the result (written to a temp name and renamed; absent until the job succeeds)
    jobs/<id>/metadata.json provenance of the result (same rule)
    uploads/                uploads in flight (streamed here before validation, then moved into the job folder)

States: queued → running → succeeded | failed | cancelled (queued → cancelled directly). Only state changes are stored;
live progress is held by the service. A job that was running when the server died is re-queued once on restart, and
failed with the reason ``interrupted`` the next time (``attempts`` counts the starts).
Thread-safe: one connection guarded by a lock (the server, its dispatcher and its event reader share it).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

STATES = ("queued", "running", "succeeded", "failed", "cancelled")
TERMINAL = frozenset({"succeeded", "failed", "cancelled"})
INTERRUPTED = "interrupted"
MAX_ATTEMPTS = 2  # the original start plus one re-queue after a crash

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    client_job_id TEXT UNIQUE,
    pipeline TEXT NOT NULL,
    params TEXT NOT NULL,
    bundle_sha256 TEXT NOT NULL,
    input_files TEXT NOT NULL DEFAULT '{}',
    priority INTEGER NOT NULL DEFAULT 0,
    state TEXT NOT NULL,
    error TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL
);
CREATE INDEX IF NOT EXISTS jobs_queue ON jobs (state, priority DESC, seq);
"""
# Columns added after the first release, created on open in older databases.
_ADDED_COLUMNS = {"input_files": "TEXT NOT NULL DEFAULT '{}'"}


@dataclass(frozen=True)
class JobRecord:
    """One row of the job table. Times are Unix seconds (float, UTC). ``input_files``: files attached beyond the
    bundle, form field name → sha256 (e.g. ``{"source_video": ...}``), each at ``jobs/<id>/<name>``."""

    id: str
    client_job_id: str | None
    pipeline: str
    params: dict[str, Any]
    bundle_sha256: str
    priority: int
    state: str
    error: str | None
    attempts: int
    created_at: float
    started_at: float | None
    finished_at: float | None
    seq: int
    input_files: dict[str, str]


class JobStore:
    """The job table at ``<data_dir>/jobs.sqlite3`` and the per-job folders beside it."""

    def __init__(self, data_dir: str | Path):
        self.data_dir = Path(data_dir)
        (self.data_dir / "jobs").mkdir(parents=True, exist_ok=True)
        (self.data_dir / "uploads").mkdir(exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.data_dir / "jobs.sqlite3", check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # durable across a process crash, which is what we face
        self._db.executescript(_SCHEMA)
        present = {row["name"] for row in self._db.execute("PRAGMA table_info(jobs)")}
        for name, declaration in _ADDED_COLUMNS.items():
            if name not in present:
                self._db.execute(f"ALTER TABLE jobs ADD COLUMN {name} {declaration}")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def job_dir(self, job_id: str) -> Path:
        return self.data_dir / "jobs" / job_id

    def uploads_dir(self) -> Path:
        return self.data_dir / "uploads"

    @staticmethod
    def _record(row: sqlite3.Row) -> JobRecord:
        data = dict(row)
        data["params"] = json.loads(data["params"])
        data["input_files"] = json.loads(data["input_files"])
        return JobRecord(**data)

    def create(
        self,
        job_id: str,
        *,
        pipeline: str,
        params: dict[str, Any],
        bundle_sha256: str,
        input_files: dict[str, str] | None = None,
        priority: int = 0,
        client_job_id: str | None = None,
    ) -> tuple[JobRecord, bool]:
        """Insert a queued job; returns (record, created). With a ``client_job_id`` already in the table the
        existing record comes back with ``created=False`` (idempotent retry); the caller compares its contents.
        ``input_files``: name → sha256 of the files in the job folder beyond the bundle."""
        with self._lock:
            try:
                self._db.execute(
                    "INSERT INTO jobs (id, client_job_id, pipeline, params, bundle_sha256, input_files, priority, "
                    "state, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, 'queued', ?)",
                    (job_id, client_job_id, pipeline, json.dumps(params, sort_keys=True), bundle_sha256,
                     json.dumps(input_files or {}, sort_keys=True), priority, time.time()),
                )
                created = True
            except sqlite3.IntegrityError:
                if client_job_id is None:
                    raise
                created = False
            key, value = ("id", job_id) if created else ("client_job_id", client_job_id)
            row = self._db.execute(f"SELECT * FROM jobs WHERE {key} = ?", (value,)).fetchone()
        return self._record(row), created

    def get(self, job_id: str) -> JobRecord | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return None if row is None else self._record(row)

    def get_by_client_id(self, client_job_id: str) -> JobRecord | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM jobs WHERE client_job_id = ?", (client_job_id,)).fetchone()
        return None if row is None else self._record(row)

    def list(self, *, state: str | None = None, limit: int = 100) -> list[JobRecord]:
        """Newest first."""
        query, args = "SELECT * FROM jobs", []
        if state is not None:
            query, args = query + " WHERE state = ?", [state]
        with self._lock:
            rows = self._db.execute(query + " ORDER BY seq DESC LIMIT ?", (*args, limit)).fetchall()
        return [self._record(r) for r in rows]

    def count(self, state: str) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM jobs WHERE state = ?", (state,)).fetchone()[0]

    def claim_next(self) -> JobRecord | None:
        """Atomically move the next queued job (highest priority, then oldest) to ``running`` and return it."""
        with self._lock:
            row = self._db.execute(
                "UPDATE jobs SET state = 'running', attempts = attempts + 1, started_at = ?"
                " WHERE seq = (SELECT seq FROM jobs WHERE state = 'queued' ORDER BY priority DESC, seq LIMIT 1)"
                " RETURNING *",
                (time.time(),),
            ).fetchone()
        return None if row is None else self._record(row)

    def finish(self, job_id: str, state: str, error: str | None = None) -> bool:
        """Move a non-terminal job to a terminal ``state``; False when it was already terminal (or unknown)."""
        if state not in TERMINAL:
            raise ValueError(f"state must be one of {sorted(TERMINAL)}; got {state!r}")
        with self._lock:
            cur = self._db.execute(
                "UPDATE jobs SET state = ?, error = ?, finished_at = ? WHERE id = ? AND state IN ('queued', 'running')",
                (state, error, time.time(), job_id),
            )
        return cur.rowcount == 1

    def cancel_if_queued(self, job_id: str) -> bool:
        """Cancel a job that has not started; False when it is running, finished or unknown."""
        with self._lock:
            cur = self._db.execute(
                "UPDATE jobs SET state = 'cancelled', finished_at = ? WHERE id = ? AND state = 'queued'",
                (time.time(), job_id),
            )
        return cur.rowcount == 1

    def recover(self) -> tuple[list[str], list[str]]:
        """After a crash: re-queue jobs left ``running`` once, fail them with ``interrupted`` the second time.

        Returns (requeued ids, failed ids). Call before any worker starts.
        """
        with self._lock:
            requeued = [r[0] for r in self._db.execute(
                "UPDATE jobs SET state = 'queued', started_at = NULL WHERE state = 'running' AND attempts < ?"
                " RETURNING id", (MAX_ATTEMPTS,)).fetchall()]
            failed = [r[0] for r in self._db.execute(
                "UPDATE jobs SET state = 'failed', error = ?, finished_at = ? WHERE state = 'running' RETURNING id",
                (INTERRUPTED, time.time())).fetchall()]
        return requeued, failed
