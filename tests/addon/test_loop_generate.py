"""The artist's loop end to end: real bpy scene, real export, real ``trajplate serve`` with a tiny pipeline.

Generate → tick until done → a movie strip on a free channel spanning the shot, a decodable file, provenance;
cancel mid-job reaches the server; errors (backend down, 4xx) become one line and leave nothing behind.
"""

from __future__ import annotations

import pytest

av = pytest.importorskip("av", reason="the loop tests need the backend environment (PyAV, trajplate)")
pytestmark = pytest.mark.blender_compat
pytest_plugins = ["fixtures_loop"]


@pytest.fixture
def shot(loop, live_backend, tmp_path):
    import bpy

    scene = loop.small_shot()
    loop.prefs_obj.backend_url = live_backend
    settings = scene.trajplate
    settings.pipeline, settings.steps, settings.seed = "test-loop", 4, 5
    bpy.ops.wm.save_as_mainfile(filepath=str(tmp_path / "shot.blend"))
    return bpy.context.scene


def _finished(loop):
    return lambda: not loop.session.manager.busy


def test_generate_two_variations_land_as_takes(loop, shot, tmp_path):
    import bpy

    editor = shot.sequence_editor_create()
    blocker = loop.colour_strip(editor, "blocker", 1, 3, 6)
    shot.trajplate.variations = 2
    assert bpy.ops.trajplate.generate() == {"FINISHED"}
    jobs = list(loop.session.manager.jobs)
    assert [j.state for j in jobs] == ["exporting", "exporting"]
    loop.drive(_finished(loop), timeout=120)

    assert [j.state for j in jobs] == ["succeeded", "succeeded"], [j.error for j in jobs]
    strips = [loop.compat.strips(editor)[j.strip] for j in jobs]
    assert sorted(s.channel for s in strips) == [2, 3] and blocker.channel == 1
    client = loop.client.Client(loop.prefs_obj.backend_url)
    for job, strip in zip(jobs, strips, strict=True):
        assert (strip.frame_final_start, strip.frame_final_end) == (shot.frame_start, shot.frame_end + 1)
        seed = job.spec.params["seed"]
        assert strip.name.startswith(f"Scene · test-loop · seed {seed} · take ")
        server = client.job(job.server_id)
        assert strip["trajplate_job_id"] == job.server_id
        assert strip["trajplate_bundle_sha256"] == server["bundle_sha256"]
        assert (strip["trajplate_pipeline"], strip["trajplate_seed"], strip["trajplate_steps"]) == ("test-loop",
                                                                                                   seed, 4)
        assert strip["trajplate_prompt"] == shot["trajplate_scene_prompt"]
        assert strip["trajplate_backend_url"] == loop.prefs_obj.backend_url
        assert bool(strip["trajplate_tiny"])
        path = bpy.path.abspath(strip.filepath)
        assert path.startswith(str(tmp_path / "trajplate" / "Scene"))
        with av.open(path) as container:
            decoded = sum(1 for _ in container.decode(video=0))
        assert decoded == client.metadata(job.server_id)["frame_count"]
    assert {j.spec.params["seed"] for j in jobs} == {5, 6}
    assert not list((tmp_path / "trajplate" / "Scene").glob(".*"))  # no partial or hidden leftovers


def test_cancel_mid_job_stops_the_server_job(loop, shot, tmp_path):
    import bpy

    shot.trajplate.steps = 200
    shot.trajplate.options = '{"step_ms": 100}'
    bpy.ops.trajplate.generate()
    job = loop.session.manager.jobs[-1]
    loop.drive(lambda: job.stage == "denoising" and job.step >= 1, timeout=120)
    bpy.ops.trajplate.cancel_job(job_id=job.id)
    loop.drive(lambda: not job.active, timeout=60)

    assert job.state == "cancelled"
    assert loop.client.Client(loop.prefs_obj.backend_url).job(job.server_id)["state"] == "cancelled"
    assert loop.sequencer.takes(shot) == []
    assert not list((tmp_path / "trajplate").rglob("*.mp4"))


def test_backend_down_is_one_line_and_retry_works(loop, shot, live_backend):
    import bpy

    loop.prefs_obj.backend_url = f"http://127.0.0.1:{loop.free_port()}"  # nothing listens there
    bpy.ops.trajplate.generate()
    job = loop.session.manager.jobs[-1]
    loop.drive(lambda: not job.active, timeout=120)
    assert job.state == "failed"
    assert job.error.startswith("Backend not reachable at http://127.0.0.1:") and "\n" not in job.error
    assert loop.sequencer.takes(shot) == []

    job.spec.backend_url = live_backend  # the artist starts the backend; Retry is one click
    assert bpy.ops.trajplate.retry_job(job_id=job.id) == {"FINISHED"}
    loop.drive(lambda: not job.active, timeout=120)
    assert job.state == "succeeded" and len(loop.sequencer.takes(shot)) == 1


def test_4xx_names_the_field(loop, shot):
    import bpy

    shot.trajplate.options = '{"no_such_option": 1}'
    bpy.ops.trajplate.generate()
    job = loop.session.manager.jobs[-1]
    loop.drive(lambda: not job.active, timeout=120)
    assert job.state == "failed"
    assert job.error.startswith("Backend error 422: params.options") and "no_such_option" in job.error
    assert loop.sequencer.takes(shot) == []
