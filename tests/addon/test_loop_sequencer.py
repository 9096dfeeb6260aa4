"""Takes in the sequencer (real bpy, real MP4s): free channel, exact span and retime, provenance, no overwrite."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.blender_compat
pytest_plugins = ["fixtures_loop"]

METADATA = {
    "job_id": "job-1", "pipeline": "test-loop", "seed": 7, "steps": 8, "guidance": 1.0, "prompt": "a red block",
    "negative_prompt": "", "bundle_sha256": "ab" * 32, "tiny": True, "weights": {"base": "rev1"}, "fps": 8.0,
    "frame_count": 16,
}


def _scene(bpy, fps=24, start=1, end=48):
    scene = bpy.context.scene
    scene.render.fps, scene.render.fps_base = fps, 1.0
    scene.frame_start, scene.frame_end = start, end
    scene.render.resolution_x, scene.render.resolution_y = 64, 48
    return scene


def _add(loop, scene, video, metadata, start=1, end=48):
    return loop.sequencer.add_take(scene, video, metadata, shot="Shot", shot_scene=scene.name, frame_start=start,
                                   frame_end=end, backend_url="http://127.0.0.1:1", params={"pipeline": "x"})


def test_8fps_take_spans_24fps_shot_exactly(loop, tmp_path):
    import bpy

    scene = _scene(bpy)
    reds = loop.colour_ramp_video(tmp_path / ".dl.mp4")
    # The backend's time map: 16 generated frames stand for shot frames 1..48 evenly (what "sample" maps give).
    shot_frames = [1 + i * 47 / 15 for i in range(16)]
    strip = _add(loop, scene, tmp_path / ".dl.mp4", {**METADATA, "shot_frames": shot_frames})

    assert (strip.frame_final_start, strip.frame_final_end) == (1, 49)  # exclusive end: frames 1..48
    assert (scene.render.fps, scene.render.fps_base) == (24, 1.0)  # never changed silently
    # Each shot frame shows the generated frame whose time-map frame is nearest (no ties on this map).
    for frame in (1, 2, 25, 47, 48):
        expected = min(range(16), key=lambda i: abs(shot_frames[i] - frame))
        red = loop.render_sequencer_red(scene, frame, tmp_path)
        assert int(abs(reds.astype(float) - red).argmin()) == expected, (frame, red, expected)


def test_time_map_shorter_than_shot_holds_last_frame(loop, tmp_path):
    import bpy

    scene = _scene(bpy)
    reds = loop.colour_ramp_video(tmp_path / ".dl.mp4")
    shot_frames = [1 + 3 * i for i in range(16)]  # 8 fps samples of a 24 fps shot: 1, 4, ..., 46
    strip = _add(loop, scene, tmp_path / ".dl.mp4", {**METADATA, "shot_frames": shot_frames})
    assert (strip.frame_final_start, strip.frame_final_end) == (1, 49)
    # Frame 14 stands for 43, frame 15 for 46: 44 is nearer 43, 45 nearer 46; 47 and 48 hold the last frame.
    for frame, index in ((44, 14), (45, 15), (48, 15)):
        assert abs(loop.render_sequencer_red(scene, frame, tmp_path) - reds[index]) < 8, frame


def test_provenance_name_and_files(loop, tmp_path):
    import bpy

    scene = _scene(bpy)
    loop.colour_ramp_video(tmp_path / ".dl.mp4")
    score = {"summary": {"objmc_px": 3.2, "camera_ate_m": 0.125}, "warnings": []}
    strip = _add(loop, scene, tmp_path / ".dl.mp4", {**METADATA, "score": score})

    assert strip.name == "Shot · test-loop · seed 7 · take 1"
    assert strip.filepath.endswith("take_001_test-loop_seed7.mp4")
    assert strip["trajplate_job_id"] == "job-1"
    assert strip["trajplate_pipeline"] == "test-loop"
    assert strip["trajplate_seed"] == 7 and strip["trajplate_steps"] == 8
    assert strip["trajplate_guidance"] == pytest.approx(1.0)
    assert strip["trajplate_prompt"] == "a red block"
    assert strip["trajplate_bundle_sha256"] == "ab" * 32
    assert strip["trajplate_backend_url"] == "http://127.0.0.1:1"
    assert bool(strip["trajplate_tiny"]) is True
    assert json.loads(strip["trajplate_weights_revision"]) == {"base": "rev1"}
    assert strip["trajplate_score_summary"] == "objmc_px 3.2, camera_ate_m 0.125"
    assert strip["trajplate_score"]["summary"]["objmc_px"] == pytest.approx(3.2)
    saved = json.loads((tmp_path / "take_001_test-loop_seed7.json").read_text())
    assert saved["job_id"] == "job-1"
    assert not (tmp_path / ".dl.mp4").exists()


def test_two_takes_never_overwrite_and_use_free_channels(loop, tmp_path):
    import bpy

    scene = _scene(bpy)
    editor = scene.sequence_editor_create()
    blocker = loop.colour_strip(editor, "blocker", 1, 10, 20)
    strips = []
    for _ in range(2):
        loop.colour_ramp_video(tmp_path / ".dl.mp4")
        strips.append(_add(loop, scene, tmp_path / ".dl.mp4", METADATA))
    assert [s.channel for s in strips] == [2, 3]
    assert blocker.channel == 1
    assert sorted(p.name for p in tmp_path.glob("take_*.mp4")) == ["take_001_test-loop_seed7.mp4",
                                                                   "take_002_test-loop_seed7.mp4"]
    assert strips[1].name.endswith("take 2")
    assert [s.name for s in loop.sequencer.takes(scene)] == [strips[1].name, strips[0].name]


def test_unreadable_video_leaves_no_strip_and_no_file(loop, tmp_path):
    import bpy

    scene = _scene(bpy)
    (tmp_path / ".dl.mp4").write_bytes(b"not a movie at all")
    with pytest.raises(RuntimeError, match="could not read"):
        _add(loop, scene, tmp_path / ".dl.mp4", METADATA)
    assert list(loop.compat.strips(scene.sequence_editor)) == []
    assert list(tmp_path.iterdir()) == []


def test_unsaved_blend_takes_go_to_temp_with_warning(loop, tmp_path):
    import bpy

    assert bpy.data.filepath == ""
    folder, warning = loop.sequencer.takes_folder("//trajplate", "My Shot/1")
    assert "not saved" in warning and str(folder) in warning
    assert folder.name == "My_Shot_1"
    bpy.ops.wm.save_as_mainfile(filepath=str(tmp_path / "shot.blend"))
    folder, warning = loop.sequencer.takes_folder("//trajplate", "My Shot/1")
    assert warning == "" and folder == tmp_path / "trajplate" / "My_Shot_1"
