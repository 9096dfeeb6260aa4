"""A source take travels with the job (``source_video`` file part): real server, real HTTP, real MP4s, tiny models.

``test-crafter`` is the real TrajectoryCrafter adapter on tiny weights at 64×96×9; ``test-loop-source`` converges to
the take's first frame, so its output shows which file reached the worker (tests/support/source_pipelines.py).
"""

import hashlib
import io
import json

import av
import httpx
import numpy as np
import pytest
from support.pipelines import ServerProcess, follow, service_env, wait_for
from support.source_pipelines import PLUGINS
from trajplate.server.validation import ParamsError, parse_params
from trajplate.shot import load_shot
from trajplate.video import write_mp4

TAKE_RGB = (200, 40, 90)


@pytest.fixture(scope="module")
def env():
    return service_env(TRAJPLATE_PLUGINS=PLUGINS)


@pytest.fixture(scope="module")
def server(tmp_path_factory, env):
    data = tmp_path_factory.mktemp("source-server") / "data"
    data.mkdir()
    proc = ServerProcess(data, "--accept-research-licences", "--max-upload-mb", "4", env=env)
    try:
        yield proc.start()
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def take(tmp_path_factory, small_shot_bundle) -> bytes:
    """An MP4 take: the shot's first frame panning 2 px per frame, 13 frames, with a flat coloured band on top."""
    first = load_shot(small_shot_bundle).first_frame.copy()
    first[:8] = TAKE_RGB
    path = tmp_path_factory.mktemp("take") / "take.mp4"
    write_mp4(path, np.stack([np.roll(first, 2 * i, axis=1) for i in range(13)]), 8.0)
    return path.read_bytes()


@pytest.fixture(scope="module")
def flat_take(tmp_path_factory) -> bytes:
    path = tmp_path_factory.mktemp("flat") / "flat.mp4"
    write_mp4(path, np.full((4, 48, 64, 3), TAKE_RGB, np.uint8), 8.0)
    return path.read_bytes()


def submit_with(client, bundle, params, source=None, **fields):
    files = {"bundle": ("shot.zip", bundle, "application/zip")}
    if source is not None:
        files["source_video"] = ("take.mp4", source, "video/mp4")
    return client.post("/v1/jobs", files=files, data={"params": json.dumps(params), **fields})


def last_frame(client, job_id):
    with av.open(io.BytesIO(client.get(f"/v1/jobs/{job_id}/video").content)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)][-1]


def test_the_real_adapter_reshoots_the_uploaded_take(client, server, bundle, take, small_shot_bundle):
    shot = load_shot(small_shot_bundle)
    params = {"pipeline": "test-crafter", "steps": 2, "seed": 1,
              "options": {"target_w2c": shot.camera_w2c_opencv.tolist()}}
    answer = submit_with(client, bundle, params, take)
    assert answer.status_code == 201, answer.text
    job = answer.json()
    assert job["input_files"] == {"source_video": hashlib.sha256(take).hexdigest()}
    assert client.get(f"/v1/jobs/{job['id']}").json()["input_files"] == job["input_files"]
    final = follow(client, job["id"], timeout=600)[-1]
    assert final["state"] == "succeeded", final["error"]
    meta = client.get(f"/v1/jobs/{job['id']}/metadata").json()
    assert meta["pipeline_metadata"]["source"] == "take" and meta["pipeline_metadata"]["depth_alignment"]
    assert meta["input_files"] == job["input_files"] and meta["frame_count"] == 9
    assert (server.data_dir / "jobs" / job["id"] / "source_video").read_bytes() == take

    # the same job without a take re-shoots the shot's render: this bundle has no RGB frames, so it fails naming them
    plain = submit_with(client, bundle, params).json()
    assert plain["input_files"] == {}
    failed = follow(client, plain["id"], timeout=600)[-1]
    assert failed["state"] == "failed" and "RGB renders" in failed["error"]


def test_the_take_reaches_the_worker(client, bundle, flat_take):
    """test-loop-source converges to the first frame of the take it was given."""
    answer = submit_with(client, bundle, {"pipeline": "test-loop-source", "steps": 20}, flat_take)
    assert answer.status_code == 201, answer.text
    assert follow(client, answer.json()["id"])[-1]["state"] == "succeeded"
    colour = last_frame(client, answer.json()["id"]).reshape(-1, 3).mean(axis=0)
    assert np.abs(colour - TAKE_RGB).max() < 8, colour


def test_idempotent_retry_compares_the_source_video(client, bundle, take, flat_take):
    params = {"pipeline": "test-loop-source", "steps": 2}
    first = submit_with(client, bundle, params, take, client_job_id="take-retry-1")
    again = submit_with(client, bundle, params, take, client_job_id="take-retry-1")
    assert first.status_code == 201 and again.status_code == 200 and again.json()["id"] == first.json()["id"]
    for source in (None, flat_take):  # the same key with no take, or another take, is another job: refused
        clash = submit_with(client, bundle, params, source, client_job_id="take-retry-1")
        assert clash.status_code == 409 and "source video" in clash.json()["detail"]
    plain = submit_with(client, bundle, params, client_job_id="take-retry-2")
    assert submit_with(client, bundle, params, client_job_id="take-retry-2").json()["id"] == plain.json()["id"]
    assert submit_with(client, bundle, params, take, client_job_id="take-retry-2").status_code == 409
    for job_id in (first.json()["id"], plain.json()["id"]):
        assert follow(client, job_id)[-1]["state"] == "succeeded"


def test_bad_source_videos_and_depth_model_paths_get_422(client, server, bundle, take, tmp_path):
    path = tmp_path / "empty.avi"
    with av.open(str(path), "w", format="avi") as container:  # a video stream with no frames
        stream = container.add_stream("mpeg4", rate=8)
        stream.width, stream.height = 64, 48
        container.start_encoding()
    cases = [
        (submit_with(client, bundle, {"pipeline": "test-loop-source"}, b"\x00\x01 not a video" * 100),
         ["source_video", "FFmpeg", "movie file"]),
        (submit_with(client, bundle, {"pipeline": "test-loop-source"}, take[: len(take) // 3]),
         ["source_video"]),
        (submit_with(client, bundle, {"pipeline": "test-loop-source"}, path.read_bytes()),
         ["source_video", "no frames"]),
        (submit_with(client, bundle, {"pipeline": "test-loop", "steps": 2}, take),
         ["source_video", "test-loop", "takes no source video", "test-crafter", "trajectorycrafter"]),
        (submit_with(client, bundle, {"pipeline": "test-crafter", "options": {"depth_model": "/srv/models/depth"}}),
         ["params.options.depth_model", "repo id", "trajplate run"]),
        (submit_with(client, bundle, {"pipeline": "trajectorycrafter",
                                      "options": {"source_video": "/etc/passwd"}}, take),
         ["params.options.source_video", "source_video"]),
    ]
    for answer, words in cases:
        assert answer.status_code == 422, answer.text
        assert all(w in answer.json()["detail"] for w in words), answer.json()
    big = submit_with(client, bundle, {"pipeline": "test-loop-source"}, b"\0" * (4 << 20))
    assert big.status_code == 413 and "source_video" in big.json()["detail"]
    assert list((server.data_dir / "uploads").iterdir()) == []  # refused uploads leave nothing behind


def test_depth_model_over_http_is_a_repo_id(tmp_path, monkeypatch):
    def params(depth_model):
        return json.dumps({"pipeline": "trajectorycrafter", "options": {"depth_model": depth_model}})

    assert parse_params(params("depth-anything/Depth-Anything-V2-Small-hf")).options["depth_model"]
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models" / "depth").mkdir(parents=True)
    for folder in ("models/depth", str(tmp_path / "models" / "depth"), "../depth"):
        with pytest.raises(ParamsError, match="params.options.depth_model"):
            parse_params(params(folder))


def test_restart_reruns_the_job_with_its_source(tmp_path, env, bundle, flat_take):
    data = tmp_path / "data"
    data.mkdir()
    server = ServerProcess(data, env=env).start()
    try:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            params = {"pipeline": "test-loop-source", "steps": 20, "options": {"step_ms": 150}}
            job_id = submit_with(client, bundle, params, flat_take).json()["id"]
            wait_for(client, job_id, lambda j: j["progress"]["stage"] == "denoising")
        server.kill9()
        server = ServerProcess(data, env=env).start()
        with httpx.Client(base_url=server.url, timeout=60) as client:
            final = follow(client, job_id)[-1]
            assert final["state"] == "succeeded" and final["attempts"] == 2
            assert final["input_files"] == {"source_video": hashlib.sha256(flat_take).hexdigest()}
            colour = last_frame(client, job_id).reshape(-1, 3).mean(axis=0)
        assert np.abs(colour - TAKE_RGB).max() < 8, colour
    finally:
        server.stop()


def test_cli_run_takes_a_source_video(tmp_path, small_shot_bundle, flat_take):
    import subprocess
    import sys

    (tmp_path / "take.mp4").write_bytes(flat_take)
    run = [sys.executable, "-m", "trajplate.cli", "run", str(small_shot_bundle), "-o", str(tmp_path / "out.mp4"),
           "--steps", "20", "--source-video", str(tmp_path / "take.mp4")]
    env = service_env(TRAJPLATE_PLUGINS=PLUGINS)
    out = subprocess.run([*run, "--pipeline", "test-loop-source"], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    meta = json.loads((tmp_path / "out.json").read_text())
    assert meta["input_files"] == {"source_video": hashlib.sha256(flat_take).hexdigest()}
    with av.open(str(tmp_path / "out.mp4")) as container:
        last = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)][-1]
    assert np.abs(last.reshape(-1, 3).mean(axis=0) - TAKE_RGB).max() < 8
    refused = subprocess.run([*run, "--pipeline", "test-loop"], env=env, capture_output=True, text=True, timeout=300)
    assert refused.returncode == 2 and "--source-video" in refused.stderr
