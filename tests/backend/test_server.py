"""The job API through a real server on loopback: real HTTP, real SQLite, a spawned worker, real MP4s.

One server (embedded executor, one CPU worker, the test pipeline ``test-loop`` plugged in) serves the whole module.
"""

import hashlib
import io
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import av
import cv2
import httpx
import numpy as np
import pytest
from support.pipelines import PRESET, ServerProcess, follow, submit, wait_for
from trajplate.server.app import create_app
from trajplate.server.config import ServerConfig
from trajplate.shot import load_shot

ROOT = Path(__file__).resolve().parents[2]
MAX_QUEUE = 20
MAX_UPLOAD_MB = 4


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    data = tmp_path_factory.mktemp("server") / "data"
    data.mkdir()
    proc = ServerProcess(data, "--max-queue", str(MAX_QUEUE), "--max-upload-mb", str(MAX_UPLOAD_MB))
    try:
        yield proc.start()
    finally:
        proc.stop()


def test_health(client):
    health = client.get("/v1/health").json()
    assert health["status"] == "ok" and health["executor"] == "embedded" and health["gpu"] is None
    assert health["queue_length"] == 0 and health["workers"][0]["device_name"] == "cpu"
    assert health["auth"] is False and health["tiny_fallback"] is True


def test_lifecycle_sse_download_decode(client, bundle, server):
    steps = 7
    answer = submit(client, bundle, {"pipeline": "test-loop", "steps": steps, "seed": 5})
    assert answer.status_code == 201, answer.text
    job_id = answer.json()["id"]
    events = follow(client, job_id)
    assert events[-1]["state"] == "succeeded", events[-1]
    denoising = [e["progress"]["step"] for e in events if e["progress"]["stage"] == "denoising"]
    assert denoising == list(range(1, steps + 1))  # every step arrives, in order, and reaches `steps`
    assert all(e["progress"]["steps"] == steps for e in events if e["progress"]["stage"] == "denoising")
    stages = [e["progress"]["stage"] for e in events]
    assert stages.index("loading") < stages.index("conditioning") < stages.index("denoising") < stages.index("encoding")

    video = client.get(f"/v1/jobs/{job_id}/video")
    assert video.status_code == 200 and video.headers["content-type"] == "video/mp4"
    with av.open(io.BytesIO(video.content)) as container:
        stream = container.streams.video[0]
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
        assert stream.codec_context.name == "h264" and stream.codec_context.pix_fmt == "yuv420p"
        assert container.metadata["trajplate_job_id"] == job_id and container.metadata["trajplate_seed"] == "5"
    assert len(frames) == PRESET.native.frames and frames[0].shape == (PRESET.native.height, PRESET.native.width, 3)

    meta = client.get(f"/v1/jobs/{job_id}/metadata").json()
    job_dir = server.data_dir / "jobs" / job_id
    assert meta["job_id"] == job_id and meta["pipeline"] == "test-loop" and meta["tiny"] is True
    assert meta["steps"] == steps and meta["seed"] == 5 and meta["frame_count"] == PRESET.native.frames
    assert meta["bundle_sha256"] == events[0]["bundle_sha256"] == hashlib.sha256(bundle).hexdigest()
    assert meta["weights"] == {"base": "tiny", "adapter": "tiny"}
    assert len(meta["shot_frames"]) == PRESET.native.frames and meta["timings"]["total_s"] > 0
    assert sorted(p.name for p in job_dir.iterdir()) == [
        "bundle.zip",
        "job.log",
        "metadata.json",
        "params.json",
        "video.mp4",
    ]
    assert (job_dir / "bundle.zip").read_bytes() == bundle
    assert client.get(f"/v1/jobs/{job_id}").json()["tiny"] is True

    partial = client.get(f"/v1/jobs/{job_id}/video", headers={"Range": "bytes=0-99"})
    assert partial.status_code == 206 and partial.content == video.content[:100]


def test_take_converges_to_the_first_frame(client, bundle):
    """The test pipeline's output is the shot's first frame (its DDIM loop denoises toward it): the right bundle
    reached the worker and the frames survived encoding."""
    job_id = submit(client, bundle, {"pipeline": "test-loop", "steps": 20}).json()["id"]
    assert follow(client, job_id)[-1]["state"] == "succeeded"
    with av.open(io.BytesIO(client.get(f"/v1/jobs/{job_id}/video").content)) as container:
        last = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)][-1]
    first = load_shot(bundle).first_frame
    expected = cv2.resize(first, (PRESET.native.width, PRESET.native.height), interpolation=cv2.INTER_AREA)
    assert np.abs(last.astype(int) - expected.astype(int)).mean() < 12


def test_cancel_while_denoising_then_next_job_runs(client, bundle):
    answer = submit(client, bundle, {"pipeline": "test-loop", "steps": 200, "options": {"step_ms": 100}})
    job_id = answer.json()["id"]
    running = wait_for(client, job_id, lambda j: j["progress"]["stage"] == "denoising" and j["progress"]["step"] >= 2)
    cancelled = client.delete(f"/v1/jobs/{job_id}")
    assert cancelled.status_code == 200
    final = wait_for(client, job_id, lambda j: j["state"] != "running", timeout=10)
    assert final["state"] == "cancelled"
    # within one step: at most the step in flight when DELETE arrived, plus the one reported before the check
    assert final["progress"]["step"] <= running["progress"]["step"] + 2
    assert final["progress"]["stage"] == "denoising"  # decoding never started
    assert client.get(f"/v1/jobs/{job_id}/video").status_code == 404
    following = submit(client, bundle, {"pipeline": "test-loop", "steps": 3}).json()["id"]
    assert follow(client, following)[-1]["state"] == "succeeded"


def test_cancel_queued_job_and_priorities(client, bundle):
    blocker = submit(client, bundle, {"pipeline": "test-loop", "steps": 30, "options": {"step_ms": 30}}).json()["id"]
    wait_for(client, blocker, lambda j: j["state"] == "running")
    low = submit(client, bundle, {"pipeline": "test-loop", "steps": 1}).json()["id"]
    doomed = submit(client, bundle, {"pipeline": "test-loop", "steps": 1}).json()["id"]
    high = submit(client, bundle, {"pipeline": "test-loop", "steps": 1}, priority="5").json()["id"]
    assert client.delete(f"/v1/jobs/{doomed}").json()["state"] == "cancelled"  # at once: it never started
    for job_id in (blocker, low, high):
        assert follow(client, job_id)[-1]["state"] == "succeeded"
    jobs = {j["id"]: j for j in client.get("/v1/jobs", params={"limit": 10}).json()}
    assert jobs[high]["started_at"] < jobs[low]["started_at"]  # priority beats FIFO
    assert jobs[doomed]["started_at"] is None and jobs[doomed]["attempts"] == 0


def test_worker_crash_fails_the_job_and_a_fresh_worker_takes_the_next(client, bundle):
    job_id = submit(client, bundle, {"pipeline": "test-loop", "steps": 5, "options": {"die_at_step": 2}}).json()["id"]
    final = follow(client, job_id)[-1]
    assert final["state"] == "failed" and "worker process died (exit code 3)" in final["error"]
    after = submit(client, bundle, {"pipeline": "test-loop", "steps": 2}).json()["id"]
    assert follow(client, after)[-1]["state"] == "succeeded"


def test_idempotent_submit_with_client_job_id(client, bundle):
    params = {"pipeline": "test-loop", "steps": 2}
    first = submit(client, bundle, params, client_job_id="blender-take-0042")
    again = submit(client, bundle, params, client_job_id="blender-take-0042")
    assert first.status_code == 201 and again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    clash = submit(client, bundle, {**params, "seed": 9}, client_job_id="blender-take-0042")
    assert clash.status_code == 409 and "client_job_id" in clash.json()["detail"]
    assert follow(client, first.json()["id"])[-1]["state"] == "succeeded"


@pytest.mark.parametrize(
    ("params", "status", "words"),
    [
        ({"pipeline": "nope"}, 422, ["params.pipeline", "test-loop", "posetraj"]),
        ({"pipeline": "test-loop", "colour": 1}, 422, ["params.colour", "valid fields", "seed"]),
        ({"pipeline": "test-loop", "steps": 0}, 422, ["params.steps"]),
        ({"pipeline": "test-loop", "options": {"stepms": 1}}, 422, ["params.options.stepms", "step_ms"]),
        ({"pipeline": "test-loop", "tier": "ultra"}, 422, ["params.tier", "draft"]),
        # server paths: the in-process CLI reads them, the HTTP API must not let a client make the server read files
        ({"pipeline": "trajectory-attention", "options": {"tracks_dir": "/etc"}}, 422,
         ["params.options.tracks_dir", "trajplate run"]),
        ({"pipeline": "trajectorycrafter", "options": {"source_video": "/etc/passwd"}}, 422,
         ["params.options.source_video", "trajplate run"]),
        ],
)
def test_bad_params_get_422_naming_the_field(client, bundle, params, status, words):
    answer = submit(client, bundle, params)
    assert answer.status_code == status, answer.text
    assert all(w in answer.json()["detail"] for w in words), answer.json()


def test_bad_uploads_get_4xx(client, bundle, server):
    cases = [
        (client.post("/v1/jobs", json={"pipeline": "test-loop"}), 415),
        (
            client.post(
                "/v1/jobs", data={"params": json.dumps({"pipeline": "test-loop"})}, files={"other": ("x", b"1")}
            ),
            422,
        ),
        (client.post("/v1/jobs", files={"params": (None, json.dumps({"pipeline": "test-loop"}))}), 422),
        (submit(client, b"PK\x03\x04 not a zip", {"pipeline": "test-loop"}), 422),
        (submit(client, bundle[: len(bundle) // 2], {"pipeline": "test-loop"}), 422),
        (submit(client, bundle + b"\0" * (MAX_UPLOAD_MB << 20), {"pipeline": "test-loop"}), 413),
    ]
    for answer, status in cases:
        assert answer.status_code == status, answer.text
        assert answer.json()["detail"]
    assert "bundle" in cases[3][0].json()["detail"]
    assert list((server.data_dir / "uploads").iterdir()) == []  # refused uploads leave nothing behind
    assert client.get("/v1/jobs/" + "0" * 32).status_code == 404
    assert client.get("/v1/jobs/../../etc/passwd").status_code == 404


def test_100_submissions_from_10_clients(client, bundle, server):
    def one_client(index):
        answers = []
        with httpx.Client(base_url=server.url, timeout=120) as own:
            for k in range(10):
                answers.append(submit(own, bundle, {"pipeline": "test-loop", "steps": 2, "seed": index * 10 + k}))
        return answers

    with ThreadPoolExecutor(10) as pool:
        answers = [a for batch in pool.map(one_client, range(10)) for a in batch]
    assert len(answers) == 100 and {a.status_code for a in answers} <= {201, 503}
    refused = [a for a in answers if a.status_code == 503]
    assert all(int(a.headers["Retry-After"]) > 0 for a in refused)
    accepted = [a.json()["id"] for a in answers if a.status_code == 201]
    assert len(set(accepted)) == len(accepted) >= MAX_QUEUE
    for job_id in accepted:
        wait_for(client, job_id, lambda j: j["state"] in ("succeeded", "failed", "cancelled"), timeout=300)
    listed = client.get("/v1/jobs", params={"limit": 1000}).json()
    mine = [j for j in listed if j["id"] in set(accepted)]
    assert len(mine) == len(accepted) and all(j["state"] == "succeeded" for j in mine)
    seeds = sorted(json.loads((server.data_dir / "jobs" / j / "params.json").read_text())["seed"] for j in accepted)
    assert len(set(seeds)) == len(seeds)  # each accepted submission is its own job, none duplicated


def test_openapi_document_is_checked_in(tmp_path):
    """docs/openapi.json is what the app generates; regenerate it with `python -m trajplate.server.openapi`."""
    generated = create_app(ServerConfig(data_dir=tmp_path)).openapi()
    assert json.loads((ROOT / "docs" / "openapi.json").read_text()) == json.loads(json.dumps(generated))


def test_startup_loads_the_pipeline_catalog_before_serving(tmp_path):
    """Every pipeline package is imported in the app's startup, before the port opens. A lazy first
    GET /v1/pipelines imported torch and diffusers (8.5 s on 2 cores) and outlived the add-on's 10 s timeout in CI."""
    from fastapi.testclient import TestClient
    from trajplate.jobs.catalog import all_presets, installed_class

    installed_class.cache_clear()
    with TestClient(create_app(ServerConfig(data_dir=tmp_path / "data", devices=["cpu"]))):
        loaded = installed_class.cache_info().currsize
    assert loaded == len(all_presets()) > 0


def test_lifecycle_with_real_tiny_magicmotion(client, bundle):
    """The same round trip through a real pipeline: tiny MagicMotion weights (same classes and layouts as the
    authors') loaded by its real loading code in the worker."""
    from trajplate.jobs.catalog import installed_class

    if installed_class("magicmotion")[0] is None:
        pytest.skip(f"magicmotion is not available: {installed_class('magicmotion')[1]}")
    answer = submit(client, bundle, {"pipeline": "magicmotion", "steps": 2, "seed": 1})
    assert answer.status_code == 201, answer.text
    events = follow(client, answer.json()["id"], timeout=1800)
    assert events[-1]["state"] == "succeeded", events[-1]["error"]
    assert [e["progress"]["step"] for e in events if e["progress"]["stage"] == "denoising"][-1] == 2
    meta = client.get(f"/v1/jobs/{answer.json()['id']}/metadata").json()
    with av.open(io.BytesIO(client.get(f"/v1/jobs/{answer.json()['id']}/video").content)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert meta["tiny"] and len(frames) == meta["frame_count"] == len(meta["shot_frames"])
    assert frames[0].shape == (meta["height"], meta["width"], 3)
