"""The Ray executor behind the same HTTP API: lifecycle and cancel against a real local Ray (``num_cpus=2``).

The test process starts Ray (its workers inherit the test pipeline's environment), and the server connects to it as
to any cluster (``--executor ray --ray-address``), so the actor, the streaming events and the result transfer are
the ones a GPU cluster uses.
"""

import io
import os

import av
import httpx
import pytest
import ray
from support.pipelines import PRESET, ServerProcess, follow, service_env, submit, wait_for


@pytest.fixture(scope="module")
def ray_server(tmp_path_factory):
    env = service_env()
    saved = {k: os.environ.get(k) for k in ("PYTHONPATH", "TRAJPLATE_PLUGINS", "TRAJPLATE_HOME")}
    os.environ.update({k: env[k] for k in saved})  # inherited by the raylet and so by every Ray worker
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, _node_ip_address="127.0.0.1")
    data = tmp_path_factory.mktemp("ray") / "data"
    data.mkdir()
    # Ray 2.60 clusters require their auth token (~/.ray/auth_token); a connecting driver sends it in token mode
    server = ServerProcess(data, "--executor", "ray", "--ray-address", ray.get_runtime_context().gcs_address,
                           env={**env, "RAY_AUTH_MODE": "token"})
    try:
        yield server.start(timeout=180)
    finally:
        server.stop()
        ray.shutdown()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def test_ray_lifecycle(ray_server, bundle):
    with httpx.Client(base_url=ray_server.url, timeout=60) as client:
        health = client.get("/v1/health").json()
        assert health["executor"] == "ray" and health["workers"][0]["device"] == "cpu"
        job_id = submit(client, bundle, {"pipeline": "test-loop", "steps": 5, "seed": 2}).json()["id"]
        events = follow(client, job_id)
        assert events[-1]["state"] == "succeeded", events[-1]
        assert [e["progress"]["step"] for e in events if e["progress"]["stage"] == "denoising"] == [1, 2, 3, 4, 5]
        with av.open(io.BytesIO(client.get(f"/v1/jobs/{job_id}/video").content)) as container:
            frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
        assert len(frames) == PRESET.native.frames and frames[0].shape == (24, 32, 3)
        meta = client.get(f"/v1/jobs/{job_id}/metadata").json()
        assert meta["job_id"] == job_id and meta["tiny"] and meta["host"]
        assert "succeeded" in client.get(f"/v1/jobs/{job_id}/log").text  # the actor's log came back too


def test_ray_cancel_while_denoising_then_next_job(ray_server, bundle):
    with httpx.Client(base_url=ray_server.url, timeout=60) as client:
        job_id = submit(client, bundle, {"pipeline": "test-loop", "steps": 200, "options": {"step_ms": 100}}).json()["id"]
        running = wait_for(client, job_id, lambda j: j["progress"]["stage"] == "denoising" and j["progress"]["step"] >= 2)
        client.delete(f"/v1/jobs/{job_id}")
        final = wait_for(client, job_id, lambda j: j["state"] != "running", timeout=15)
        assert final["state"] == "cancelled" and final["progress"]["step"] <= running["progress"]["step"] + 2
        after = submit(client, bundle, {"pipeline": "test-loop", "steps": 2}).json()["id"]
        assert follow(client, after)[-1]["state"] == "succeeded"
