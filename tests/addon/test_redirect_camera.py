"""Camera redirect in the artist's loop: the redirect camera the add-on sends, the source take it uploads, the checks.

Real bpy, real export child process, real ``trajplate serve`` with ``test-crafter`` (the real TrajectoryCrafter
adapter on small tiny weights, tests/support/source_pipelines.py) and the built-in pipelines' real answers.
"""

from __future__ import annotations

import hashlib
import json
import math

import numpy as np
import pytest

av = pytest.importorskip("av", reason="the loop tests need the backend environment (PyAV, trajplate)")
pytest_plugins = ["fixtures_loop"]


@pytest.fixture(scope="module")
def crafter_backend(tmp_path_factory):
    """``trajplate serve`` with the test-crafter plugin, research licences accepted."""
    from support.pipelines import ServerProcess, service_env
    from support.source_pipelines import PLUGINS

    data = tmp_path_factory.mktemp("crafter-backend") / "data"
    data.mkdir()
    server = ServerProcess(data, "--accept-research-licences", env=service_env(TRAJPLATE_PLUGINS=PLUGINS))
    try:
        yield server.start()
    finally:
        server.stop()


def _redirect_camera(scene, name="Redirect"):
    """A second camera, parented to a rotated, scaled empty, moving and zooming over the shot, shifted, its sensor
    fitted vertically: everything the export's camera code handles."""
    import bpy
    from support.scenes import key_path, look_at

    rig = bpy.data.objects.new(f"{name} rig", None)
    scene.collection.objects.link(rig)
    rig.rotation_euler = (0.0, 0.0, math.radians(20))
    rig.scale = (1.5, 1.5, 1.5)
    cam = bpy.data.objects.new(name, bpy.data.cameras.new(name))
    scene.collection.objects.link(cam)
    cam.parent = rig
    look_at(cam, (4.0, -8.0, 2.0), (0.0, 0.0, 0.5))
    key_path(cam, [(1, (4.0, -8.0, 2.0)), (scene.frame_end, (-3.0, -7.0, 1.5))])
    cam.data.sensor_fit, cam.data.sensor_height, cam.data.shift_x = "VERTICAL", 20.0, 0.05
    key_path(cam.data, [(1, 28.0), (scene.frame_end, 40.0)], attr="lens")
    return cam


def _with_backend(loop, url):
    loop.prefs_obj.backend_url = url
    loop.session.refresh_backend(loop.session.client())
    loop.drive(lambda: not loop.session.backend()["busy"], timeout=30)
    state = loop.session.backend()
    assert state["health"] and not state["error"], state["error"]  # health and the pipeline list both answered


def test_redirect_camera_equals_the_shot_camera_export(loop):
    """The add-on's redirect w2c and K for a camera are the bundle's arrays when that camera is the shot camera."""
    import bpy

    from addon.export.exporter import ExportOptions, build_shot
    from addon.export.redirect import redirect_camera

    scene = loop.small_shot(frames=12)
    scene.unit_settings.scale_length = 0.5
    scene.render.pixel_aspect_x = 1.25
    cam = _redirect_camera(scene)
    scene.frame_set(5)
    frames = np.arange(1, 13, 2)
    ours = redirect_camera(scene, frames, cam)
    assert scene.frame_current == 5  # restored

    scene.camera = cam
    _, arrays, _, _ = build_shot(scene, ExportOptions(include_renders=False, frame_range=(1, 12, 2)))
    np.testing.assert_array_equal(ours["frame_numbers"], arrays["frame_numbers"])
    np.testing.assert_array_equal(ours["camera_w2c_opencv"], arrays["camera_w2c_opencv"])
    np.testing.assert_array_equal(ours["intrinsics"], arrays["intrinsics"])
    assert len(np.unique(ours["intrinsics"][:, 0, 0])) == len(frames)  # the zoom is in K, frame by frame
    with pytest.raises(Exception, match="Perspective"):
        cam.data.type = "ORTHO"
        redirect_camera(scene, frames, cam)
    bpy.data.objects.remove(cam)


def test_check_list_names_what_is_wrong(loop, crafter_backend, tmp_path):
    import bpy

    _with_backend(loop, crafter_backend.url)
    scene = loop.small_shot(frames=6)
    settings = scene.trajplate
    settings.pipeline = "trajectorycrafter"  # the built-in pipeline's own answer from GET /v1/pipelines
    info = loop.session.pipeline_info("trajectorycrafter")
    assert info["input_files"] == ["source_video"]

    def failures():
        return [text for ok, text in loop.panels._checks(bpy.context, settings, info) if ok is False]

    def generate_error():
        with pytest.raises(RuntimeError) as err:
            bpy.ops.trajplate.generate()
        return str(err.value)

    assert failures() == ["Redirect camera not set: pick a second, animated camera"]
    assert "Redirect camera not set" in generate_error()
    settings.redirect_camera = scene.camera
    assert "is the shot camera" in failures()[0] and "is the shot camera" in generate_error()
    ortho = _redirect_camera(scene, "Ortho")
    ortho.data.type = "ORTHO"
    settings.redirect_camera = ortho
    assert "not perspective" in failures()[0] and "Lens › Type" in generate_error()
    ortho.data.type = "PERSP"
    scene.collection.objects.unlink(ortho)
    assert "is not in the scene" in failures()[0]
    scene.collection.objects.link(ortho)
    assert failures() == []

    take = tmp_path / ".gone.mp4"
    loop.colour_ramp_video(take)
    strip = loop.sequencer.add_take(scene, take, {"job_id": "j0", "pipeline": "magicmotion", "frame_count": 16},
                                    shot=scene.name, shot_scene=scene.name, frame_start=1, frame_end=6,
                                    backend_url="", params={})
    bpy.ops.trajplate.set_source(source=strip.name)
    assert settings.source_take == strip.name and failures() == []
    (tmp_path / bpy.path.basename(strip.filepath)).unlink()
    assert "lost its movie file" in failures()[0] and "lost its movie file" in generate_error()
    bpy.ops.trajplate.set_source(source="SHOT_RENDER")
    assert settings.source_take == "" and failures() == []

    settings.redirect_camera = None
    settings.options = '{"target_pose": [0, 10, 0, 0, 0]}'  # the authors' orbit instead of a camera
    assert failures() == []
    settings.pipeline, settings.options = "test-loop", ""  # a pipeline that takes neither
    checks = loop.panels._checks(bpy.context, settings, loop.session.pipeline_info("test-loop"))
    assert not [text for _, text in checks if "edirect" in text or "source" in text]
    assert loop.session.manager.jobs == []


def test_generate_uploads_the_take_and_sends_the_redirect_camera(loop, crafter_backend, tmp_path):
    import bpy
    from trajplate.video import write_mp4

    from addon.export.redirect import redirect_camera

    _with_backend(loop, crafter_backend.url)
    scene = loop.small_shot(frames=8)
    bpy.ops.wm.save_as_mainfile(filepath=str(tmp_path / "shot.blend"))
    scene = bpy.context.scene
    cam = _redirect_camera(scene)
    # An earlier take of this shot: a pattern with texture (the depth estimate of frame 0 must not be flat).
    takes = tmp_path / "trajplate" / "Scene"
    takes.mkdir(parents=True)
    y, x = np.mgrid[0:64, 0:96]
    write_mp4(takes / ".dl.mp4", np.stack([np.dstack([(x * 2 + 8 * i) % 256, y * 3, (x + y) % 256])
                                           for i in range(8)]).astype(np.uint8), 8.0)
    strip = loop.sequencer.add_take(scene, takes / ".dl.mp4", {"job_id": "j0", "pipeline": "magicmotion",
                                                               "frame_count": 8}, shot=scene.name,
                                    shot_scene=scene.name, frame_start=1, frame_end=8, backend_url="", params={})
    take_sha = hashlib.sha256((takes / bpy.path.basename(strip.filepath)).read_bytes()).hexdigest()

    settings = scene.trajplate
    settings.pipeline, settings.steps, settings.redirect_camera = "test-crafter", 2, cam
    bpy.ops.trajplate.set_source(source=strip.name)
    assert bpy.ops.trajplate.generate() == {"FINISHED"}
    bpy.ops.trajplate.set_source(source="SHOT_RENDER")
    assert bpy.ops.trajplate.generate() == {"FINISHED"}
    loop.drive(lambda: not loop.session.manager.busy, timeout=600)

    from_take, from_render = loop.session.manager.jobs
    assert [from_take.state, from_render.state] == ["succeeded", "succeeded"], [from_take.error, from_render.error]
    expected = redirect_camera(scene, np.arange(1, 9), cam)
    client = loop.client.Client(crafter_backend.url)
    for job, source in ((from_take, "take"), (from_render, "render")):
        assert job.metadata["pipeline_metadata"]["source"] == source
        server = client.job(job.server_id)
        assert server["input_files"] == ({"source_video": take_sha} if source == "take" else {})
        sent = json.loads((crafter_backend.data_dir / "jobs" / job.server_id / "params.json").read_text())["options"]
        np.testing.assert_array_equal(sent["target_w2c"], expected["camera_w2c_opencv"])
        np.testing.assert_array_equal(sent["target_K"], expected["intrinsics"])
    assert from_take.spec.redirect != from_render.spec.redirect and from_take.spec.redirect.is_file()
    loop.session.manager.clear_finished()
    assert not from_take.spec.redirect.exists() and not from_take.spec.bundle.exists()
