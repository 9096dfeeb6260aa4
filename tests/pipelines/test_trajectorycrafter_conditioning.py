"""TrajectoryCrafter conditioning: z-buffered splatting, depth alignment, target paths and the modes' time maps."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from trajplate.conditioning import trajectorycrafter as tc
from trajplate.pipelines.base import PipelineInputError

K = np.array([[60.0, 0.0, 40.0], [0.0, 60.0, 24.0], [0.0, 0.0, 1.0]])  # 80×48, unshifted: cx = W/2
H, W = 48, 80


def _t(*arrays):
    return [torch.from_numpy(np.asarray(a))[None] for a in arrays]


def _w2c(translation=(0.0, 0.0, 0.0)) -> np.ndarray:
    """World = source camera (OpenCV); a camera whose centre is at ``translation``, same orientation."""
    m = np.eye(4)
    m[:3, 3] = -np.asarray(translation)
    return m


def test_identity_camera_reproduces_the_source_with_no_holes():
    rgb = np.random.default_rng(0).random((3, H, W)).astype(np.float32)
    depth = np.random.default_rng(1).uniform(1, 9, (H, W)).astype(np.float32)
    depth[:10, :20] = np.inf  # background at infinity maps to itself too
    frames, d, eye, k = _t(rgb, depth, np.eye(4), K)
    render, holes = tc.splat(frames, d, eye, k, eye, k, (W, H))
    assert not holes.any()
    finite = torch.from_numpy(np.isfinite(depth))
    torch.testing.assert_close(render[0][:, finite], frames[0][:, finite], rtol=0, atol=1e-5)


def test_camera_translation_moves_a_plane_by_the_analytic_homography():
    """Dots on the plane z = 4 m; the camera moves by t. Target pixel = K (X − t) / z', X = z K⁻¹ p: each dot's
    intensity centroid lands within 0.5 px of it."""
    rgb = np.zeros((3, H, W), np.float32)
    dots = [(20.5, 12.5), (40.5, 24.5), (61.5, 30.5), (30.5, 36.5)]  # pixel centres (x, y), DESIGN convention
    for x, y in dots:
        rgb[:, int(y), int(x)] = 1.0
    depth = np.full((H, W), 4.0, np.float32)
    t = np.array([0.3, -0.2, 0.5])
    frames, d, src, k, dst = _t(rgb, depth, np.eye(4), K, _w2c(t))
    render, _ = tc.splat(frames, d, src, k, dst, k, (W, H))
    image = render[0, 0].numpy()
    for x, y in dots:
        point = 4.0 * np.linalg.inv(K) @ [x, y, 1.0] - t
        u, v, _ = K @ point / point[2]
        cx, cy = int(u), int(v)
        window = image[cy - 2:cy + 3, cx - 2:cx + 3]
        ys, xs = np.mgrid[cy - 2:cy + 3, cx - 2:cx + 3] + 0.5  # pixel centres
        centroid = np.array([(window * xs).sum(), (window * ys).sum()]) / window.sum()
        assert np.hypot(*(centroid - [u, v])) < 0.5


def test_occluded_points_lose_the_z_test():
    """A green square at 2 m in front of a red wall at 4 m; seen from 0.4 m to the right, the square stays pure green
    (the wall behind it loses) and the wall it hid appears as holes beside it."""
    rgb = np.zeros((3, H, W), np.float32)
    rgb[0] = 1.0
    depth = np.full((H, W), 4.0, np.float32)
    depth[14:34, 30:50] = 2.0
    rgb[:, 14:34, 30:50] = [[[0.0]], [[1.0]], [[0.0]]]
    frames, d, src, k, dst = _t(rgb, depth, np.eye(4), K, _w2c((0.4, 0.0, 0.0)))
    render, holes = tc.splat(frames, d, src, k, dst, k, (W, H))
    shift = 60.0 * 0.4 / 2.0  # the square moves 12 px left, the wall 6 px
    inner = render[0][:, 17:31, int(33 - shift):int(47 - shift)]
    torch.testing.assert_close(inner, torch.tensor([0.0, 1.0, 0.0])[:, None, None].expand_as(inner))
    assert holes[0, 17:31, 40:44].all()  # disocclusion right of the square: 12 − 6 = 6 px wide
    assert not holes[0, 17:31, 10:15].any()


def test_a_source_twice_as_dense_as_the_output_is_thinned_without_moving_the_geometry():
    """A 160×96 source of a plane at 4 m rendered into the 80×48 output: the identity camera gives the average of
    every 2×2 block with no holes, and after a camera move the dots land where the analytic homography puts them."""
    rgb = np.random.default_rng(3).integers(0, 256, (1, 2 * H, 2 * W, 3), dtype=np.uint8)
    depth = np.full((1, 2 * H, 2 * W), 4.0, np.float32)
    k2 = (np.diag([2.0, 2.0, 1.0]) @ K)[None]  # the same camera at twice the resolution
    eye = np.eye(4)[None]
    _, _, k_thin = tc.match_density(rgb, depth, k2, (W, H))
    np.testing.assert_allclose(k_thin, K[None])
    render, holes = tc.render_point_clouds(rgb, depth, eye, k2, eye, K[None], (W, H))
    assert not holes.any()
    blocks = rgb[0].reshape(H, 2, W, 2, 3).mean((1, 3)) / 255.0
    np.testing.assert_allclose(render[0], blocks, rtol=0, atol=0.51 / 255)  # INTER_AREA rounds to uint8

    dots = [(20.5, 12.5), (40.5, 24.5), (61.5, 30.5)]  # output pixel centres; each dot is a 2×2 source block
    rgb = np.zeros((1, 2 * H, 2 * W, 3), np.uint8)
    for x, y in dots:
        rgb[0, int(2 * y) - 1:int(2 * y) + 1, int(2 * x) - 1:int(2 * x) + 1] = 255
    t = np.array([0.3, -0.2, 0.5])
    render, _ = tc.render_point_clouds(rgb, depth, eye, k2, _w2c(t)[None], K[None], (W, H))
    image = render[0, ..., 0]
    for x, y in dots:
        point = 4.0 * np.linalg.inv(K) @ [x, y, 1.0] - t
        u, v, _ = K @ point / point[2]
        cx, cy = int(u), int(v)
        window = image[cy - 2:cy + 3, cx - 2:cx + 3]
        ys, xs = np.mgrid[cy - 2:cy + 3, cx - 2:cx + 3] + 0.5
        centroid = np.array([(window * xs).sum(), (window * ys).sum()]) / window.sum()
        assert np.hypot(*(centroid - [u, v])) < 0.5


def test_clean_holes_grows_the_mask_by_two_pixels_and_blacks_what_it_takes():
    render = np.ones((2, H, W, 3), np.float32)
    holes = np.zeros((2, H, W), bool)
    holes[0, 20, 30] = True
    clean, grown = tc.dilate_holes(render, holes)
    assert grown[0, 18:23, 28:33].all() and grown[0].sum() == 25 and not grown[1].any()
    assert (clean[grown] == 0).all() and (clean[~grown] == 1).all()
    assert holes.sum() == 1 and render.min() == 1  # inputs untouched


def test_depth_alignment_recovers_an_affine_inverse_depth_exactly():
    rng = np.random.default_rng(2)
    true = rng.uniform(0.8, 12.0, (5, H, W))
    true[:, :5] = np.inf  # background: excluded from the fit
    estimate = 3.7 / true + 0.25  # what a relative inverse-depth model would output, up to its affine map
    depth, a, b = tc.align_inverse_depth(estimate, true[0])
    finite = np.isfinite(true)
    np.testing.assert_allclose(depth[finite], true[finite], rtol=1e-5)
    assert a == pytest.approx(1 / 3.7) and b == pytest.approx(-0.25 / 3.7)
    with pytest.raises(PipelineInputError, match="frame 0"):
        tc.align_inverse_depth(estimate, np.full((H, W), np.inf))


def test_orbit_keeps_the_pivot_centred_and_moves_as_the_authors_name_it():
    pivot = np.array([0.0, 0.0, 5.0, 1.0])
    right = tc.orbit_offset(0, 30, 0, 0, 0, 5.0)
    up = tc.orbit_offset(20, 0, 0, 0, 0, 5.0)
    for offset in (right, up):
        assert np.allclose((offset @ pivot)[:2], 0) and (offset @ pivot)[2] == pytest.approx(5.0)
    assert np.linalg.inv(right)[0, 3] > 0 and np.linalg.inv(up)[1, 3] < 0  # centre right (+x) / up (−y, OpenCV)
    dolly = np.linalg.inv(tc.orbit_offset(0, 0, 0.5, 0, 0, 5.0))
    assert dolly[2, 3] == pytest.approx(2.5)


def _source(frames=13):
    rng = np.random.default_rng(3)
    w2c = np.stack([_w2c((0.05 * i, 0, 0)) for i in range(frames)])
    return tc.Source(rgb=rng.integers(0, 255, (frames, H, W, 3), dtype=np.uint8),
                     depth=np.full((frames, H, W), 3.0, np.float32), w2c=w2c, K=np.repeat(K[None], frames, 0),
                     frame_numbers=np.arange(1, frames + 1, dtype=np.float64))


def test_gradual_maps_every_output_frame_and_the_reference():
    source = _source()
    c = tc.build_conditioning(source, tc.Target(w2c=source.w2c), shot_frame_count=13, height=32, width=48,
                              num_frames=25)
    assert c.render.shape == (25, 32, 48, 3) and c.holes.shape == (25, 32, 48) and c.keep == 0
    np.testing.assert_array_equal(c.source_index, tc.time_map(13, 25))
    np.testing.assert_array_equal(c.shot_frames, source.frame_numbers[tc.time_map(13, 25)])
    assert c.reference.shape == (10, 32, 48, 3)
    assert c.holes.mean() < 0.01  # target = source camera: only resampling fringes
    np.testing.assert_allclose(c.target_K[0], tc.scale_intrinsics(K, (W, H), (48, 32)))


def test_direct_mode_leads_in_on_the_first_frame_then_outputs_the_rest():
    source = _source()
    c = tc.build_conditioning(source, tc.Target(pose=[0, 20, 0, 0, 0]), shot_frame_count=13, mode="direct",
                              height=32, width=48, num_frames=49)
    assert c.keep == tc.DIRECT_CUT and len(c.shot_frames) == 29
    np.testing.assert_array_equal(c.source_index[:20], 0)
    np.testing.assert_array_equal(c.source_index[20:], tc.time_map(13, 29))
    np.testing.assert_allclose(c.target_w2c[0], source.w2c[0])  # the lead-in starts at the source camera
    offset = c.target_w2c[19] @ np.linalg.inv(source.w2c[0])
    np.testing.assert_allclose(c.target_w2c[-1], offset @ source.w2c[-1], atol=1e-12)  # tail: the final offset


def test_bad_targets_are_named():
    source = _source()
    with pytest.raises(PipelineInputError, match="target_w2c: 5 matrices"):
        tc.build_conditioning(source, tc.Target(w2c=source.w2c[:5]), shot_frame_count=13, num_frames=25)
    with pytest.raises(PipelineInputError, match="redirect camera is missing"):
        tc.build_conditioning(source, tc.Target(), shot_frame_count=13)
    with pytest.raises(PipelineInputError, match="options.mode"):
        tc.build_conditioning(source, tc.Target(pose=[0] * 5), shot_frame_count=13, mode="bullet")
