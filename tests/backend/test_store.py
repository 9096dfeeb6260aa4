"""The SQLite job store: idempotent creation, queue order, terminal states, crash recovery, persistence."""

import sqlite3

import pytest
from trajplate.jobs.store import INTERRUPTED, JobStore


def make(store, job_id, **kw):
    return store.create(job_id, pipeline="test-loop", params={"pipeline": "test-loop", "seed": 1},
                        bundle_sha256="ab" * 32, **kw)


def test_queue_order_priority_then_fifo(tmp_path):
    store = JobStore(tmp_path)
    for job_id, priority in (("a", 0), ("b", 0), ("c", 5), ("d", -1), ("e", 5)):
        make(store, job_id, priority=priority)
    order = [store.claim_next().id for _ in range(5)]
    assert order == ["c", "e", "a", "b", "d"]
    assert store.claim_next() is None
    assert store.get("a").state == "running" and store.get("a").attempts == 1


def test_client_job_id_is_idempotent(tmp_path):
    store = JobStore(tmp_path)
    first, created = make(store, "one", client_job_id="take-1")
    again, created_again = make(store, "two", client_job_id="take-1")
    assert created and not created_again and again.id == "one"
    assert store.get("two") is None and store.get_by_client_id("take-1").id == "one"
    with pytest.raises(sqlite3.IntegrityError):
        make(store, "one")  # a job id is never reused


def test_finish_and_cancel_only_move_live_jobs(tmp_path):
    store = JobStore(tmp_path)
    make(store, "q")
    make(store, "r")
    assert store.claim_next().id == "q"
    assert not store.cancel_if_queued("q")  # running: the worker has to stop it
    assert store.cancel_if_queued("r") and store.get("r").state == "cancelled"
    assert store.finish("q", "succeeded")
    assert not store.finish("q", "failed", "late")  # terminal states are final
    assert store.get("q").state == "succeeded" and store.get("q").error is None
    with pytest.raises(ValueError, match="state must be one of"):
        store.finish("q", "running")


def test_recover_requeues_once_then_fails_interrupted(tmp_path):
    store = JobStore(tmp_path)
    make(store, "x")
    make(store, "waiting")
    store.claim_next()
    store.close()

    store = JobStore(tmp_path)  # first restart: re-queued, keeps its place at the head of the queue
    assert store.recover() == (["x"], [])
    assert store.get("x").state == "queued" and store.get("waiting").state == "queued"
    assert store.claim_next().id == "x" and store.get("x").attempts == 2
    store.close()

    store = JobStore(tmp_path)  # crashed again while running: failed with the reason
    assert store.recover() == ([], ["x"])
    record = store.get("x")
    assert record.state == "failed" and record.error == INTERRUPTED
    assert store.get("waiting").state == "queued"  # queued jobs stay queued


def test_persistence_and_listing(tmp_path):
    store = JobStore(tmp_path)
    for i in range(5):
        make(store, f"j{i}")
    store.close()
    store = JobStore(tmp_path)
    assert [r.id for r in store.list(limit=3)] == ["j4", "j3", "j2"]
    assert store.count("queued") == 5 and store.list(state="running") == []
    assert store.get("j0").params == {"pipeline": "test-loop", "seed": 1}
    assert (tmp_path / "jobs").is_dir() and (tmp_path / "uploads").is_dir()
    assert store.job_dir("j0") == tmp_path / "jobs" / "j0"
