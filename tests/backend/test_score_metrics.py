"""Adherence score building blocks on hand-checkable inputs: SO(3)/SE(3) helpers, ATE/RPE, Umeyama, IoU,
normalisation, quality proxies and the CLI's time map."""

import json

import numpy as np
import pytest
from trajplate.score.cli import time_map
from trajplate.score.geometry import interpolate_poses, invert_poses, opencv_K, project, rotation_angle_deg, so3_exp
from trajplate.score.metrics import ate_rmse, box_iou, normalise, pose_errors, rpe, umeyama
from trajplate.score.quality import psnr, ssim, warping_error


def rot_z(deg):
    a = np.radians(deg)
    return np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1.0]])


def pose(R, t):
    T = np.eye(4)
    T[:3, :3], T[:3, 3] = R, t
    return T


@pytest.mark.parametrize("deg", [1e-4, 0.2, 5.0, 90.0, 179.9, 180.0])
def test_rotation_angle_matches_the_constructed_angle(deg):
    assert rotation_angle_deg(rot_z(deg)) == pytest.approx(deg, abs=1e-6)


def test_so3_exp_is_rodrigues():
    w = np.array([0.0, 0.0, np.radians(30)])
    np.testing.assert_allclose(so3_exp(w), rot_z(30), atol=1e-12)


def test_interpolated_pose_halfway_is_the_half_rotation_and_mean_translation():
    T = np.stack([pose(rot_z(0), [0, 0, 0]), pose(rot_z(40), [2, 4, 0])])
    mid = interpolate_poses(T, np.array([0.5, 1.0]))
    np.testing.assert_allclose(mid[0], pose(rot_z(20), [1, 2, 0]), atol=1e-12)
    np.testing.assert_allclose(mid[1], T[1], atol=1e-12)


def test_pose_errors_and_inverse():
    a, b = pose(rot_z(10), [1, 0, 0]), pose(rot_z(13), [1, 0.3, 0.4])
    rot, trans = pose_errors(a, b)
    assert rot == pytest.approx(3.0) and trans == pytest.approx(0.5)
    np.testing.assert_allclose(invert_poses(a) @ a, np.eye(4), atol=1e-12)


def test_projection_pixel_conventions():
    K = np.array([[100.0, 0, 32], [0, 100, 24], [0, 0, 1]])
    on_axis = np.array([[0.0, 0, 2]])
    np.testing.assert_allclose(project(K, on_axis), [[32, 24]])  # the image centre, pixel-corner coordinates
    np.testing.assert_allclose(project(opencv_K(K), on_axis), [[31.5, 23.5]])  # OpenCV: centres on integers
    assert np.isnan(project(K, np.array([[0.0, 0, -1]]))).all()  # behind the camera


def test_umeyama_recovers_a_rigid_transform():
    rng = np.random.default_rng(0)
    src = rng.normal(size=(20, 3))
    T = pose(so3_exp(np.array([0.3, -0.2, 0.5])), [1, 2, 3])
    dst = src @ T[:3, :3].T + T[:3, 3]
    np.testing.assert_allclose(umeyama(src, dst), T, atol=1e-10)
    with pytest.raises(ValueError, match="at least 3"):
        umeyama(src[:2], dst[:2])


def test_ate_and_rpe_follow_sturm_definitions():
    gt = np.stack([pose(rot_z(2 * i), [i, 0, 0]) for i in range(10)])
    shifted = gt.copy()
    shifted[:, :3, 3] += [0, 0.3, 0.4]  # constant 0.5 m offset of the whole path
    assert ate_rmse(shifted, gt) == pytest.approx(0.5)
    assert ate_rmse(shifted, gt, align=True) == pytest.approx(0.0, abs=1e-9)  # same shape after alignment
    drift = gt.copy()
    drift[:, :3, 3] += np.arange(10)[:, None] * [0, 0.1, 0]  # 0.1 m further every frame, no rotation error
    t, r = rpe(drift, gt)
    assert t == pytest.approx(0.1) and r == pytest.approx(0.0, abs=1e-9)
    drift[3] = np.nan  # a frame where the camera was not recovered is skipped, not fatal
    assert rpe(drift, gt)[0] == pytest.approx(0.1)
    assert np.isnan(ate_rmse(np.full_like(gt, np.nan), gt))


def test_box_iou_by_hand():
    assert box_iou(np.array([0.0, 0, 2, 2]), np.array([1.0, 1, 3, 3])) == pytest.approx(1 / 7)
    assert box_iou(np.array([0.0, 0, 1, 1]), np.array([2.0, 2, 3, 3])) == 0.0
    assert np.isnan(box_iou(np.array([np.nan] * 4), np.array([0.0, 0, 1, 1])))


def test_normalise_puts_oracle_at_one_and_frozen_at_zero():
    assert normalise(1.0, 1.0, 11.0, 0.5) == 1.0
    assert normalise(11.0, 1.0, 11.0, 0.5) == 0.0
    assert normalise(6.0, 1.0, 11.0, 0.5) == 0.5
    assert normalise(0.5, 0.9, 0.3, 0.1) == pytest.approx(1 / 3)  # higher-is-better metrics too
    assert normalise(1.0, 1.0, 1.2, 0.5) is None  # no motion this metric can see
    assert normalise(None, 1.0, 11.0, 0.5) is None


def test_quality_proxies():
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    assert psnr(img, img) == 100.0 and ssim(img, img) == pytest.approx(1.0)
    noisy = np.clip(img.astype(int) + 8, 0, 255).astype(np.uint8)
    assert 25 < psnr(img, noisy) < 35 and ssim(img, noisy) < 1.0
    shifted = np.roll(img, 2, axis=1)  # the next frame moved 2 px right
    flow = np.zeros((48, 64, 2), np.float32)
    flow[..., 0] = 2
    assert warping_error(img, shifted, flow) < warping_error(img, shifted, np.zeros_like(flow)) / 10


def test_time_map_sources(tmp_path):
    frames = np.arange(1, 50, dtype=np.int32)
    meta = tmp_path / "metadata.json"
    meta.write_text(json.dumps({"shot_frames": [1.0, 2.5, 4.0]}))
    np.testing.assert_array_equal(time_map(3, frames, metadata=meta), [1.0, 2.5, 4.0])
    by_preset = time_map(49, frames[:25], pipeline="magicmotion")  # 49 native frames over 25 shot frames
    assert len(by_preset) == 49 and by_preset[0] == 1 and by_preset[-1] == 25 and by_preset[1] == pytest.approx(1.5)
    np.testing.assert_array_equal(time_map(49, frames), frames)
    with pytest.raises(ValueError, match="--metadata"):
        time_map(20, frames)
    meta.write_text("{}")
    with pytest.raises(ValueError, match="shot_frames"):
        time_map(3, frames, metadata=meta)
