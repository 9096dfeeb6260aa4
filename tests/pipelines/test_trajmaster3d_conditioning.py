"""3DTrajMaster conditioning: exact 12-vectors from a real exported Blender scene, the authors' time map, checks.

Expected values are worked out by hand from the scene (tests/pipelines/trajmaster3d_scene.py): camera at the origin
looking along +Y with Z up, so 3DTrajMaster's camera frame (x right, y up, z forward) is world (X, Z, Y).
"""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from trajplate.conditioning.trajmaster3d import (
    compose_prompt,
    condition,
    generated_frame_positions,
    latent_frame_indices,
    preview,
)
from trajplate.pipelines.base import PipelineInputError
from trajplate.shot import Shot, load_shot

SCENE_SCRIPT = Path(__file__).with_name("trajmaster3d_scene.py")


@pytest.fixture(scope="module")
def scene_shot(tmp_path_factory):
    out = tmp_path_factory.mktemp("tm3d") / "scene.zip"
    proc = subprocess.run([sys.executable, str(SCENE_SCRIPT), str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and out.exists(), proc.stdout[-2000:] + proc.stderr[-2000:]
    return load_shot(out)


def _ids(shot):
    return {entity.name: entity.id for entity in shot.meta.entities}


def test_default_axes_entity_gives_the_hand_computed_12_vectors(scene_shot):
    walker = _ids(scene_shot)["Walker"]  # forward -Y, up Z (the export's defaults)
    poses = condition(scene_shot, entity_ids=[walker]).pose_embeds[0]
    # Frame 1: faces the camera. forward = world -Y = (0, 0, -1); up = (0, 1, 0); right = forward x up = world -X.
    np.testing.assert_allclose(poses[0], [-1, 0, 0, 0, 1, 0, 0, 0, -1, 0, 0, 5], atol=1e-5)
    # Frame 47: yawed +90 deg, so forward = world +X; right = X x Z = -Y (towards the camera); 1 m to the right.
    np.testing.assert_allclose(poses[-1], [0, 0, -1, 0, 1, 0, 1, 0, 0, 1, 0, 5], atol=1e-5)


def test_custom_axes_entity_gives_the_hand_computed_12_vectors(scene_shot):
    racer = _ids(scene_shot)["Racer"]  # forward X, up Z
    poses = condition(scene_shot, entity_ids=[racer]).pose_embeds[0]
    np.testing.assert_allclose(poses[0], [0, 0, -1, 0, 1, 0, 1, 0, 0, 0, 0, 5], atol=1e-5)
    np.testing.assert_allclose(poses[-1], [1, 0, 0, 0, 1, 0, 0, 0, 1, 1, 0, 5], atol=1e-5)


def test_rotation_columns_are_a_proper_rotation(scene_shot):
    poses = condition(scene_shot).pose_embeds
    rotation = poses[..., :9].reshape(*poses.shape[:2], 3, 3).swapaxes(-1, -2)  # columns right, up, forward
    np.testing.assert_allclose(rotation @ rotation.swapaxes(-1, -2), np.broadcast_to(np.eye(3), rotation.shape),
                               atol=1e-6)
    np.testing.assert_allclose(np.linalg.det(rotation), 1.0, atol=1e-6)


def test_in_distribution_scene_has_no_warnings_and_the_authors_prompt(scene_shot):
    inputs = condition(scene_shot)
    assert inputs.warnings == []
    caption = scene_shot.meta.entities[0].prompt
    assert inputs.prompt == f"{caption} and {caption} are moving in the desert"  # "the desert" → no double "the"
    assert inputs.pose_embeds.shape == (2, 13, 12)
    assert inputs.shot_frames[0] == 1 and inputs.shot_frames[-1] == 49 and inputs.shot_frames.shape == (49,)


def test_latent_indices_follow_the_authors_rule():
    # The authors' inference: 49 frames at stride 1.75 from source frame 10 of 99 (85 frames), spec §1.4.
    np.testing.assert_array_equal(latent_frame_indices(85) + 10, [10, 14, 21, 28, 35, 42, 49, 56, 63, 70, 77, 84, 91])
    # A 49-frame shot: frame k·... exactly, latent k >= 1 takes (4k-3 + 4k) // 2.
    np.testing.assert_array_equal(latent_frame_indices(49), [0, 2, 6, 10, 14, 18, 22, 26, 30, 34, 38, 42, 46])
    np.testing.assert_allclose(generated_frame_positions(85)[:3], [0.0, 1.75, 3.5])


def test_prompt_template_matches_the_authors():
    assert compose_prompt(["a fox"], "forest") == "a fox is moving in the forest"
    assert compose_prompt(["a fox", "a cat", "a dog"], "park") == "a fox and a cat and a dog are moving in the park"


def _with_entities(shot: Shot, columns: list[int]) -> Shot:
    """The same exported shot with its entity columns rearranged (duplicates allowed), ids renumbered 1..n."""
    per_entity = [name for name, array in shot.arrays().items() if array.ndim >= 2 and name not in (
        "camera_c2w_blender", "camera_w2c_opencv", "intrinsics", "depth", "instance_mask")]
    arrays = {name: (array[:, columns] if name in per_entity else array) for name, array in shot.arrays().items()}
    entities = [shot.meta.entities[c].model_copy(update={"id": i + 1}) for i, c in enumerate(columns)]
    meta = shot.meta.model_copy(update={"entities": entities})
    return Shot.from_arrays(meta, arrays, first_frame=shot.first_frame)


def test_more_than_three_entities_is_a_clear_error_and_selection_fixes_it(scene_shot):
    four = _with_entities(scene_shot, [0, 1, 0, 1])
    with pytest.raises(PipelineInputError, match=r"entities: 4 entities.*3 entity slots.*options\.entities"):
        condition(four)
    assert condition(four, entity_ids=[4, 1]).entity_ids == [4, 1]
    with pytest.raises(PipelineInputError, match=r"options\.entities"):
        condition(four, entity_ids=[5])


def test_missing_prompts_name_the_field(scene_shot):
    no_location = Shot.from_arrays(scene_shot.meta.model_copy(update={"location_prompt": ""}), scene_shot.arrays())
    with pytest.raises(PipelineInputError, match="location_prompt"):
        condition(no_location)
    assert condition(no_location, location_prompt="A snowy street.").prompt.endswith("moving in the snowy street")
    blank = scene_shot.meta.entities[1].model_copy(update={"prompt": "  "})
    shot = Shot.from_arrays(scene_shot.meta.model_copy(update={"entities": [scene_shot.meta.entities[0], blank]}),
                            scene_shot.arrays())
    with pytest.raises(PipelineInputError, match=r"entities\[2\]\.prompt"):
        condition(shot)


def test_standard_shot_warns_where_it_leaves_the_training_distribution(shot_bundle):
    shot = load_shot(shot_bundle)
    inputs = condition(shot)
    text = "\n".join(inputs.warnings)
    assert "static camera" in text  # the standard camera dollies 2 m
    assert "horizontal FOV" in text  # 30 mm on a 36 mm sensor: 62 deg
    assert "'Sphere' is" in text and "3–14 m" in text  # the sphere sits ~15 m away
    assert "15–24" in text  # short captions
    frames = preview(shot, inputs)
    assert frames.shape == (13, shot.height, shot.width, 3) and frames.dtype == np.uint8
    assert (frames[0] != shot.first_frame).any()  # something is drawn
