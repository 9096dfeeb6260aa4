"""Control preview: exact drawing on synthetic arrays (pixel-corner convention), and the operator on a real scene."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.blender_compat
pytest_plugins = ["fixtures_loop"]


def _arrays(frames=2, h=40, w=60):
    K = np.array([[50.0, 0, w / 2], [0, 50.0, h / 2], [0, 0, 1]])
    pose = np.eye(4)
    pose[:3, 3] = (0.0, 0.0, 5.0)  # 5 m in front of the camera, axes aligned with the camera's
    mask = np.zeros((frames, h, w), np.uint8)
    mask[:, 5:10, 5:10] = 1
    return {
        "track_2d": np.tile([[[10.5, 20.5]]], (frames, 1, 1)), "track_in_frame": np.ones((frames, 1), bool),
        "box_2d": np.tile([[[20.0, 10.0, 40.0, 30.0]]], (frames, 1, 1)), "box_2d_valid": np.ones((frames, 1), bool),
        "entity_cam_opencv": np.tile(pose, (frames, 1, 1, 1)), "intrinsics": np.tile(K, (frames, 1, 1)),
        "instance_mask": mask,
    }


def test_draw_controls_layers_land_on_the_right_pixels(loop):
    first = np.full((40, 60, 3), 100, np.uint8)
    colour = np.array([[200, 10, 10]], np.uint8)
    arrays = _arrays()
    boxes = loop.preview.draw_controls(first, arrays, colour, "magicmotion")
    assert boxes.shape == (2, 40, 60, 3)
    assert (boxes[0, 10, 20] == colour[0]).all() and (boxes[0, 29, 39] == colour[0]).all()  # box corners
    assert (boxes[0, 20, 30] == 60).all()  # inside the box: dimmed background only
    tint = boxes[0, 7, 7].astype(int)
    assert tint[0] > 120 and tint[2] < 40  # mask pixels tinted towards the entity colour
    tracks = loop.preview.draw_controls(first, arrays, colour, "posetraj")
    assert (tracks[1, 20, 10] == colour[0]).all() and (tracks[1, 17, 10] == colour[0]).all()  # the 7×7 head
    assert (tracks[1, 16, 10] == 60).all()
    axes = loop.preview.draw_controls(first, arrays, colour, "3dtrajmaster")
    # Local x (red) runs right from the centre (30, 20) for 0.5 m · 50 px / 5 m = 5 px.
    assert (axes[0, 20, 34] == loop.preview.AXIS_COLOURS[0]).all()
    assert (axes[0, 24, 30] == loop.preview.AXIS_COLOURS[1]).all()  # local y (OpenCV: down)


def test_preview_operator_adds_an_image_strip_spanning_the_shot(loop, tmp_path):
    import bpy

    scene = loop.small_shot(frames=6)
    scene.trajplate.pipeline = "3dtrajmaster"
    bpy.ops.wm.save_as_mainfile(filepath=str(tmp_path / "p.blend"))
    assert bpy.ops.trajplate.preview_controls() == {"FINISHED"}
    strip = loop.compat.strips(scene.sequence_editor)["Scene · controls · 3dtrajmaster"]
    assert strip.type == "IMAGE" and len(strip.elements) == 6
    assert (strip.frame_final_start, strip.frame_final_end) == (1, 7)
    written = sorted((tmp_path / "trajplate" / "Scene" / "controls_3dtrajmaster").glob("*.png"))
    assert [p.name for p in written] == [f"{i:04d}.png" for i in range(1, 7)]
