"""The export out of process (real bpy in a real child process): same arrays as in process, unsaved changes
included, the artist's file untouched, cancel leaves nothing, errors come back as the export's one line."""

import io
import time
import zipfile

import numpy as np
import pytest
from support.scenes import build_standard_shot

pytestmark = pytest.mark.blender_compat
pytest_plugins = ["fixtures_loop"]


def _wait(process, timeout=120):
    deadline = time.monotonic() + timeout
    while process.status().state == "running":
        assert time.monotonic() < deadline, f"export still running after {timeout} s: {process.status()}"
        time.sleep(0.05)
    return process.status()


def _bundle_arrays(path):
    with zipfile.ZipFile(path) as bundle, bundle.open("arrays.npz") as raw:
        with np.load(io.BytesIO(raw.read())) as npz:
            return {name: npz[name] for name in npz.files}


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir())


def test_background_export_equals_in_process_with_unsaved_changes(empty_scene, tmp_path):
    import json

    import bpy

    from addon.export import ExportOptions, build_shot
    from addon.export.background import background_export

    scene = build_standard_shot(96, 64, 9)
    blend = tmp_path / "artist.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(blend))
    scene.objects["Cube"]["trajplate_prompt"] = "an unsaved prompt"  # in memory only
    scene.camera.data.lens = 41.0  # an unsaved edit the export must see in K
    scene.frame_set(3)
    options = ExportOptions(include_renders=False, frame_range=(2, 8, 2))
    meta, arrays, _, _ = build_shot(scene, options)

    out = tmp_path / "job" / "shot.zip"
    out.parent.mkdir()
    process = background_export(scene, out, options)
    assert bpy.data.is_dirty and bpy.data.filepath == str(blend)  # the snapshot is a copy: nothing else changes
    process.start()
    status = _wait(process)

    assert status.state == "succeeded", (status, "\n".join(process.detail))
    assert status.fraction == 1.0 and status.stage == "done"
    assert _leftovers(out.parent) == ["shot.zip"]  # the snapshot .blend is gone
    ours = _bundle_arrays(out)
    assert sorted(ours) == sorted(arrays)
    for name, array in arrays.items():
        np.testing.assert_array_equal(ours[name], array, err_msg=name)
    with zipfile.ZipFile(out) as bundle:
        child_meta = json.loads(bundle.read("shot.json"))
    assert child_meta["blend_file"] == str(blend)  # the artist's file, not the snapshot
    assert [e["prompt"] for e in child_meta["entities"]] == [e["prompt"] for e in meta["entities"]]
    assert "an unsaved prompt" in [e["prompt"] for e in child_meta["entities"]]
    assert child_meta["camera_settings"]["lens_mm"] == 41.0
    assert scene.frame_current == 3


def test_cancel_terminates_the_child_and_leaves_nothing(empty_scene, tmp_path):
    from addon.export.background import background_export

    scene = build_standard_shot(320, 240, 40)  # renders on: long enough to cancel in the middle
    out = tmp_path / "shot.zip"
    process = background_export(scene, out)
    process.start()
    deadline = time.monotonic() + 120
    while process.status().stage != "depth and masks":
        assert process.status().state == "running" and time.monotonic() < deadline, process.status()
        time.sleep(0.05)
    t0 = time.monotonic()
    process.cancel()
    status = _wait(process, timeout=30)
    assert status.state == "cancelled" and status.error == ""
    assert time.monotonic() - t0 < 10
    assert _leftovers(tmp_path) == []  # no bundle, no writer temp file, no snapshot


def test_export_error_comes_back_as_one_line(empty_scene, tmp_path):
    import bpy

    from addon.export.background import background_export

    scene = build_standard_shot(64, 48, 5)
    bpy.data.objects.remove(scene.camera)
    out = tmp_path / "shot.zip"
    process = background_export(scene, out)
    process.start()
    status = _wait(process)
    assert status.state == "failed"
    assert status.error.startswith("Scene 'Scene' has no camera: add one") and "\n" not in status.error
    assert _leftovers(tmp_path) == []


def test_generate_cancelled_while_exporting(loop, tmp_path):
    """Generate returns at once with the export in a child; Cancel stops it and no job reaches the backend."""
    import bpy

    session = loop.session
    scene = build_standard_shot(320, 240, 40)
    scene.trajplate.pipeline, scene.trajplate.variations = "test-loop", 2
    bpy.ops.wm.save_as_mainfile(filepath=str(tmp_path / "shot.blend"))
    assert bpy.ops.trajplate.generate() == {"FINISHED"}
    jobs = list(session.manager.jobs)
    export = session.manager.exports[0].run
    loop.drive(lambda: jobs[0].stage == "depth and masks", timeout=120)
    assert [j.state for j in jobs] == ["exporting", "exporting"] and 0 < jobs[0].step < 100
    assert jobs[0].status_line.startswith("exporting ") and jobs[0].status_line.endswith(" · depth and masks")
    bpy.ops.trajplate.cancel_job()  # every active job
    session.tick()
    assert _wait(export, timeout=30).state == "cancelled"
    assert [j.state for j in jobs] == ["cancelled", "cancelled"] and not session.manager.exports
    assert all(j.server_id is None and j.spec.bundle is None for j in jobs)
    assert _leftovers(export.bundle.parent) == []
