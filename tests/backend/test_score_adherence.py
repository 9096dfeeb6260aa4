"""The adherence score on real Blender shots: procedural scenes built and exported by bpy in a subprocess
(``bench/adherence/scenes.py``, cached under ``.cache/adherence/``), their oracle renders, perturbed renders,
frozen takes and broken inputs.

Bounds measured at 320×192, 25 frames (the 720×480 figures are in docs/benchmarks.md): the oracle's camera
error ≤ 0.05° / 0.022 m, entity translation ≤ 0.18 m, ObjMC ≤ 1.9 px, box IoU ≥ 0.92; the tests allow ~2×.
"""

import json

import numpy as np
import pytest
from trajplate.cli import main as trajplate_main
from trajplate.score import ScoreInputError, calibrate, score_take
from trajplate.shot import load_shot
from trajplate.video import write_mp4

from bench.adherence.dataset import perturbed_frames, shot_bundle

SIZE = (320, 192, 25)
SMALL = (256, 160, 13)


@pytest.fixture(scope="module")
def static_linear():
    return shot_bundle("static_linear", *SIZE)


@pytest.fixture(scope="module")
def orbit_turn():
    return shot_bundle("orbit_turn", *SIZE)


def frames_of(shot):
    return shot.frame_numbers.astype(np.float64)


@pytest.mark.parametrize("name", ["static_linear", "orbit_turn"])
def test_oracle_scores_near_zero_and_frozen_take_clearly_worse(name, request):
    shot = load_shot(request.getfixturevalue(name))
    cal = calibrate(shot, frames_of(shot))
    oracle, frozen = cal["oracle"], cal["frozen"]
    assert oracle["camera_rot_deg"] < 0.15 and oracle["camera_trans_m"] < 0.05
    assert oracle["objmc_px"] < 3.0 and oracle["entity_trans_m"] < 0.25 and oracle["box_iou"] > 0.85
    # Every motion the shot has makes the frozen take clearly worse on the metric that sees it.
    assert frozen["objmc_px"] > 5 * oracle["objmc_px"] and frozen["entity_trans_m"] > 3 * oracle["entity_trans_m"]
    assert frozen["box_iou"] < oracle["box_iou"] - 0.2
    camera_moves = np.ptp(shot.camera_w2c_opencv[:, :3, 3], axis=0).max() > 0.1
    assert camera_moves == (name == "orbit_turn")
    if camera_moves:
        assert frozen["camera_rot_deg"] > 20 * oracle["camera_rot_deg"]
        assert frozen["camera_trans_m"] > 20 * oracle["camera_trans_m"]
    # Normalised: the oracle itself is 1 on every metric the shot's motion makes measurable.
    result = score_take(shot.rgb_frames, shot, frames_of(shot), calibration=cal)
    assert result["normalised"]["objmc_px"] == pytest.approx(1.0)
    assert (result["normalised"]["camera_rot_deg"] is None) == (not camera_moves)
    json.dumps(result)  # JSON-able as stored in the job metadata


def test_camera_yaw_of_5_degrees_is_measured_as_5_degrees(static_linear):
    shot = load_shot(static_linear)
    take = perturbed_frames(static_linear, camera_yaw_deg=5.0)
    cam = score_take(take, shot, frames_of(shot))["camera"]
    assert cam["rot_deg"][-1] == pytest.approx(5.0, rel=0.2)
    ramp = np.linspace(0, 5.0, len(take))  # the perturbation grows linearly from the first frame
    np.testing.assert_allclose(cam["rot_deg"], ramp, atol=0.3)


def test_entity_offset_of_20_cm_is_measured_as_20_cm(static_linear):
    shot = load_shot(static_linear)
    take = perturbed_frames(static_linear, entity_offset_m=0.2)
    result = score_take(take, shot, frames_of(shot))
    crate = next(e for e in result["entities"] if e["name"] == "Crate")
    assert np.nanmean(crate["trans_m"][-3:]) == pytest.approx(0.2, rel=0.2)
    other = next(e for e in result["entities"] if e["name"] != "Crate")
    assert max(crate["objmc_px"][-3:]) > 3 * np.nanmax(other["objmc_px"][:5])  # seen in 2D as well
    assert result["summary"]["camera_rot_deg"] < 0.15  # the camera did not move: not blamed on it


def test_wrong_length_take_is_scored_on_the_overlap_with_a_warning(static_linear):
    shot = load_shot(static_linear)
    result = score_take(shot.rgb_frames[:15], shot, frames_of(shot))
    assert any("take has 15 frames but the time map" in w for w in result["warnings"])
    assert len(result["camera"]["rot_deg"]) == 15 and result["summary"]["camera_rot_deg"] < 0.15


def test_take_not_starting_at_the_shot_gets_quality_only(static_linear, orbit_turn):
    shot = load_shot(static_linear)
    other = load_shot(orbit_turn).rgb_frames[::-1]  # another shot's frames, from its far end
    result = score_take(other, shot, frames_of(shot))
    assert any("first frame does not match" in w for w in result["warnings"])
    assert result["camera"] is None and result["summary"]["objmc_px"] is None
    assert result["summary"]["first_frame_psnr"] < 20 and result["summary"]["flicker"] is not None


def test_textureless_background_leaves_camera_unscored_with_a_reason():
    shot = load_shot(shot_bundle("textureless", *SMALL))
    result = score_take(shot.rgb_frames, shot, frames_of(shot))
    assert result["camera"] is None
    assert any("textureless" in w for w in result["warnings"])
    assert result["summary"]["first_frame_ssim"] == pytest.approx(1.0)


def test_entity_leaving_the_frame_is_scored_while_visible():
    shot = load_shot(shot_bundle("leaves_frame", *SMALL))
    result = score_take(shot.rgb_frames, shot, frames_of(shot))
    assert any("out of view" in w for w in result["warnings"])
    crate = result["entities"][0]
    in_view = np.array(crate["in_view"])
    assert in_view[0] and not in_view[-1]
    assert crate["survival"][-1] == 0.0
    assert result["summary"]["objmc_px"] < 3.0 and result["summary"]["camera_rot_deg"] < 0.15


def test_bad_frames_are_refused_naming_the_field(static_linear):
    shot = load_shot(static_linear)
    with pytest.raises(ScoreInputError, match="frames: expected dtype uint8"):
        score_take(shot.rgb_frames.astype(np.float32), shot, frames_of(shot))
    with pytest.raises(ScoreInputError, match="shot_frames: Blender frames"):
        score_take(shot.rgb_frames, shot, frames_of(shot) + 100)


def test_cli_scores_an_mp4_take(static_linear, tmp_path, capsys):
    shot = load_shot(static_linear)
    take = write_mp4(tmp_path / "take.mp4", shot.rgb_frames, 24.0)
    meta = tmp_path / "metadata.json"
    meta.write_text(json.dumps({"shot_frames": frames_of(shot).tolist()}))
    assert trajplate_main(["score", str(take), str(static_linear), "--metadata", str(meta), "--calibrate"]) == 0
    printed = capsys.readouterr().out
    assert "ObjMC (px)" in printed and "normalised" in printed
    result = json.loads((tmp_path / "take.score.json").read_text())
    # H.264 at CRF 17 barely moves the points: still oracle-like.
    assert result["summary"]["objmc_px"] < 3.0 and result["normalised"]["objmc_px"] > 0.9
    assert trajplate_main(["score", str(tmp_path / "missing.mp4"), str(static_linear)]) == 2


def test_frozen_take_of_the_standard_exported_shot(shot_bundle):
    """The shared fixture (720×480, 49 frames, dollying camera): a frozen take's camera error is the shot's own
    camera displacement from its first frame."""
    shot = load_shot(shot_bundle)
    frozen = np.repeat(shot.first_frame[None], shot.num_frames, axis=0)
    result = score_take(frozen, shot, frames_of(shot))
    centres = np.linalg.inv(shot.camera_w2c_opencv)[:, :3, 3]
    displacement = np.linalg.norm(centres - centres[0], axis=1)
    np.testing.assert_allclose(result["camera"]["trans_m"], displacement, atol=0.02)
