"""Executor robustness: kill -9 of the server mid-job, a full disk while writing, resident-pipeline eviction."""

import hashlib
import json
import os
import subprocess
import sys
import time

import httpx
from support.pipelines import PRESET, LoopPipeline, ServerProcess, follow, service_env, submit, wait_for
from trajplate.jobs.runner import PipelineCache
from trajplate.tiny import ensure_tiny


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_kill_9_mid_job_then_restart_loses_nothing(tmp_path, bundle):
    data = tmp_path / "data"
    data.mkdir()
    server = ServerProcess(data).start()
    try:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            done = submit(client, bundle, {"pipeline": "test-loop", "steps": 3}).json()["id"]
            assert follow(client, done)[-1]["state"] == "succeeded"
            video = data / "jobs" / done / "video.mp4"
            before = hashlib.sha256(video.read_bytes()).hexdigest(), (data / "jobs" / done / "metadata.json").read_bytes()
            slow = submit(client, bundle, {"pipeline": "test-loop", "steps": 40, "options": {"step_ms": 40}}).json()["id"]
            queued = submit(client, bundle, {"pipeline": "test-loop", "steps": 2}).json()["id"]
            wait_for(client, slow, lambda j: j["progress"]["stage"] == "denoising" and j["progress"]["step"] >= 3)
            worker_pid = client.get("/v1/health").json()["workers"][0]["pid"]
        server.kill9()
        deadline = time.monotonic() + 20
        while _alive(worker_pid) and time.monotonic() < deadline:  # the orphaned worker stops at its next step
            time.sleep(0.05)
        assert not _alive(worker_pid)

        server = ServerProcess(data, env=server.env)
        server.start()
        with httpx.Client(base_url=server.url, timeout=60) as client:
            rerun = follow(client, slow)
            assert rerun[-1]["state"] == "succeeded" and rerun[-1]["attempts"] == 2
            assert follow(client, queued)[-1]["state"] == "succeeded"
            jobs = client.get("/v1/jobs").json()
        assert sorted(j["id"] for j in jobs) == sorted([done, slow, queued])  # none lost, none duplicated
        assert (hashlib.sha256(video.read_bytes()).hexdigest(),
                (data / "jobs" / done / "metadata.json").read_bytes()) == before
        log = (data / "jobs" / slow / "job.log").read_text()
        assert "re-queued" in log and log.count("succeeded") == 1
    finally:
        server.stop()
    # the clean stop (SIGTERM) of the restarted server releases its workers' semaphores
    assert "leaked semaphore" not in server.log(), server.log()[-2000:]


def test_disk_full_while_writing_fails_the_job_and_keeps_earlier_results(tmp_path, small_shot_bundle, monkeypatch):
    """The worker's runner under a 1500-byte file-size limit (EFBIG, handled like ENOSPC)."""
    env = service_env()
    for name in ("TRAJPLATE_HOME", "TRAJPLATE_PLUGINS"):
        monkeypatch.setenv(name, env[name])
    ensure_tiny("test-loop")  # built here: the limited process below can write only tiny files
    job_dir = tmp_path / "job"
    job_dir.mkdir()
    script = f"""
import json, resource, shutil, signal, sys
from pathlib import Path
from trajplate.jobs.runner import JobSpec, PipelineCache, execute
from support.pipelines import PRESET
job = Path({str(job_dir)!r})
shutil.copyfile({str(small_shot_bundle)!r}, job / "bundle.zip")
(job / "video.mp4").write_bytes(b"earlier take")
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (1500, 1500))
spec = JobSpec("j", {{"pipeline": "test-loop", "steps": 2}}, PRESET.model_dump(mode="json"), "00")
outcome = execute(spec, job, PipelineCache(1 << 30), lambda *a: None)
print(json.dumps({{"state": outcome.state, "error": outcome.error}}))
"""
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["state"] == "failed" and result["error"].startswith("disk full"), out.stderr[-2000:]
    assert (job_dir / "video.mp4").read_bytes() == b"earlier take"
    assert not (job_dir / "metadata.json").exists()
    assert not [p for p in job_dir.iterdir() if p.name.endswith(".part")]


def test_resident_pipelines_evict_least_recently_used(tmp_path):
    LoopPipeline.build_tiny(tmp_path)
    loads = []

    def loader(tag):
        def load():
            loads.append(tag)
            return LoopPipeline.load(PRESET, tmp_path / "base", tmp_path / "adapter")
        return load

    size = LoopPipeline.load(PRESET, tmp_path / "base", tmp_path / "adapter").resident_bytes()
    cache = PipelineCache(budget_bytes=2 * size)  # room for two
    a = cache.get(("a",), loader("a"))
    cache.get(("b",), loader("b"))
    assert cache.get(("a",), loader("a")) is a  # resident: not loaded again, and now most recently used
    cache.get(("c",), loader("c"))  # evicts b, the least recently used
    assert cache.keys() == [("a",), ("c",)] and loads == ["a", "b", "c"]
    cache.get(("b",), loader("b"))
    assert cache.keys() == [("c",), ("b",)] and loads == ["a", "b", "c", "b"]
    tiny = PipelineCache(budget_bytes=1)  # one pipeline larger than the budget still runs
    assert tiny.get(("x",), loader("x")) is not None and tiny.keys() == [("x",)]
