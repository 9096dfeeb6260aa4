"""Exactness of Trajectory Attention's scene-flow tracks against geometry computed independently here.

Synthetic shots are ray-cast in this file (a wall, optionally a sky above it, and a cube entity), so the expected
tracks come from the scene description (plane homographies, projected displacements), not from the code under test.
The exported bundle (``shot_bundle``) is checked through a second route: entity poses in the camera frame
(``entity_cam_opencv``) and Blender-axis cameras (``camera_c2w_blender``).
"""

import numpy as np
import pytest
from trajplate.conditioning import trajectory_attention as cond
from trajplate.pipelines.base import PipelineInputError
from trajplate.shot import Shot, load_shot

W, H = 160, 96
F = 9
WALL_Y, WALL_TOP = 4.0, 2.0
HALF = 0.4  # cube half size, metres
CV_FROM_BLENDER = np.diag([1.0, -1.0, -1.0, 1.0])


def intrinsics(focal=110.0):
    return np.array([[focal, 0.0, W / 2], [0.0, focal, H / 2], [0.0, 0.0, 1.0]])


def look_at(eye, target):
    """Blender camera-to-world: columns right, up, backward (camera looks down -z)."""
    eye, target = np.asarray(eye, float), np.asarray(target, float)
    forward = (target - eye) / np.linalg.norm(target - eye)
    right = np.cross(forward, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    up = np.cross(right, forward)
    c2w = np.eye(4)
    c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = right, up, -forward, eye
    return c2w


def translation(p):
    m = np.eye(4)
    m[:3, 3] = p
    return m


def raycast(c2w_bl, K, cube_world, sky):
    """Planar depth (H, W) float32 (inf: nothing hit) and instance mask (H, W) uint8 (1: cube) of one frame."""
    u, v = np.meshgrid(np.arange(W) + 0.5, np.arange(H) + 0.5)
    rays_cv = np.linalg.inv(K) @ np.stack([u.ravel(), v.ravel(), np.ones(u.size)])  # z = 1: parameter = planar z
    c2w_cv = c2w_bl @ CV_FROM_BLENDER
    dirs = c2w_cv[:3, :3] @ rays_cv
    eye = c2w_cv[:3, 3]
    with np.errstate(divide="ignore", invalid="ignore"):
        s_wall = (WALL_Y - eye[1]) / dirs[1]
        wall_z = eye[2] + s_wall * dirs[2]
        s_wall = np.where((s_wall > 0) & (~sky | (wall_z <= WALL_TOP)), s_wall, np.inf)
        s_cube = np.full(u.size, np.inf)
        if cube_world is not None:  # slab test in the cube's frame
            inv = np.linalg.inv(cube_world)
            origin, local = inv[:3, :3] @ eye + inv[:3, 3], inv[:3, :3] @ dirs
            lo, hi = (-HALF - origin[:, None]) / local, (HALF - origin[:, None]) / local
            near, far = np.minimum(lo, hi).max(axis=0), np.maximum(lo, hi).min(axis=0)
            s_cube = np.where((near <= far) & (near > 0), near, np.inf)
    depth = np.minimum(s_wall, s_cube).reshape(H, W).astype(np.float32)
    mask = (s_cube < s_wall).reshape(H, W).astype(np.uint8)
    return depth, mask


def make_shot(cameras_bl, cube_worlds=None, *, sky=False, K=None):
    """A validated Shot of F frames; ``cube_worlds`` (F, 4, 4) or None (no entity)."""
    K = intrinsics() if K is None else K
    frames = len(cameras_bl)
    n = 0 if cube_worlds is None else 1
    renders = [raycast(c, K, None if cube_worlds is None else cube_worlds[i], sky) for i, c in enumerate(cameras_bl)]
    w2c = np.stack([CV_FROM_BLENDER @ np.linalg.inv(c) for c in cameras_bl])
    world = np.zeros((frames, 0, 4, 4)) if cube_worlds is None else np.asarray(cube_worlds)[:, None]
    meta = {
        "format_version": "1.0", "generator": {"name": "test"}, "fps": 24.0, "frame_start": 1, "frame_end": frames,
        "frame_step": 1, "frame_count": frames, "resolution": [W, H],
        "camera_settings": {"type": "PERSP", "lens_mm": 35.0, "sensor_width_mm": 36.0, "sensor_height_mm": 24.0,
                            "sensor_fit": "AUTO", "shift_x": 0.0, "shift_y": 0.0, "clip_start": 0.1,
                            "clip_end": 100.0},
        "entities": [{"id": 1, "name": "Cube", "forward_axis": "Y", "up_axis": "Z", "color": [255, 0, 0]}][:n],
        "renders": {"depth": True, "instance_mask": True},
    }
    quat = np.zeros((frames, n, 4))
    quat[..., 0] = 1.0
    arrays = {
        "frame_numbers": np.arange(1, frames + 1), "time_s": np.arange(frames) / 24.0,
        "camera_c2w_blender": np.stack(cameras_bl), "camera_w2c_opencv": w2c, "intrinsics": np.repeat(K[None], frames, 0),
        "entity_world": world, "entity_position": world[..., :3, 3], "entity_quaternion_wxyz": quat,
        "entity_cam_opencv": w2c[:, None] @ world, "track_2d": np.zeros((frames, n, 2)),
        "track_depth": np.zeros((frames, n)), "track_in_frame": np.zeros((frames, n), bool),
        "track_visible": np.zeros((frames, n), bool), "box_2d": np.zeros((frames, n, 4)),
        "box_2d_valid": np.zeros((frames, n), bool), "box_3d_world": np.zeros((frames, n, 8, 3)),
        "depth": np.stack([d for d, _ in renders]), "instance_mask": np.stack([m for _, m in renders]),
    }
    return Shot.from_arrays(meta, arrays, first_frame=np.zeros((H, W, 3), np.uint8))


def project(K, w2c_cv, points):
    cam = w2c_cv[:3, :3] @ points.T + w2c_cv[:3, 3:]
    pix = K @ cam
    return (pix[:2] / pix[2]).T


def test_static_camera_cube_translating_half_a_metre():
    camera = look_at([0.0, -3.0, 1.0], [0.0, 4.0, 1.0])
    offsets = np.linspace(0.0, 0.5, F)  # the cube slides 0.5 m along world x
    cubes = [translation([-0.3 + dx, 1.0, 0.8]) for dx in offsets]
    shot = make_shot([camera] * F, cubes)
    tracks, shot_frames = cond.shot_tracks(shot, (W, H), num_frames=5, step=2, draws=1, seed=3)

    np.testing.assert_array_equal(shot_frames, [1, 3, 5, 7, 9])
    K, w2c = shot.intrinsics[0], shot.camera_w2c_opencv[0]
    start = tracks.coords[0].astype(np.float64)
    cols, rows = np.floor(start).astype(int).T
    on_cube = shot.instance_mask[0, rows, cols] == 1
    assert on_cube.sum() > 50 and (~on_cube).sum() > 500
    np.testing.assert_array_equal(tracks.entity, on_cube.astype(np.int16))

    # Cube pixels: the surface point (ray-cast depth here) shifted by the cube's displacement, projected.
    rays = np.linalg.inv(K) @ np.stack([start[:, 0], start[:, 1], np.ones(len(start))])
    points_cam = (rays * shot.depth[0, rows, cols]).T
    c2w_cv = np.linalg.inv(w2c)
    points_world = points_cam @ c2w_cv[:3, :3].T + c2w_cv[:3, 3]
    for j, frame in enumerate([0, 2, 4, 6, 8]):
        moved = points_world[on_cube] + [offsets[frame], 0.0, 0.0]
        expected = project(K, w2c, moved)
        np.testing.assert_allclose(tracks.coords[j, on_cube], expected, atol=0.01)
        assert tracks.valid[j, on_cube].mean() > 0.95  # the front face stays visible while sliding
    # Background pixels stay put; those the cube covers later are occluded.
    np.testing.assert_allclose(tracks.coords[:, ~on_cube], np.broadcast_to(start[~on_cube], tracks.coords[:, ~on_cube].shape), atol=1e-4)
    covered_last = shot.instance_mask[8, rows, cols] == 1
    assert (covered_last & ~on_cube).sum() > 20
    assert not tracks.valid[-1, covered_last & ~on_cube].any()
    uncovered = ~on_cube & (shot.instance_mask[8, rows, cols] == 0)
    # Background bordering the cube's silhouette may keep a 1-px leak; away from it everything is visible.
    assert tracks.valid[-1, uncovered].mean() > 0.97


def test_panning_camera_static_scene_equals_plane_and_rotation_homographies():
    eyes = np.stack([np.linspace(-0.4, 0.4, F), np.full(F, -3.0), np.full(F, 1.2)], axis=-1)
    targets = np.stack([np.linspace(-1.5, 1.5, F), np.full(F, 4.0), np.full(F, 1.6)], axis=-1)
    cameras = [look_at(e, t) for e, t in zip(eyes, targets, strict=True)]
    shot = make_shot(cameras, sky=True)
    tracks, _ = cond.shot_tracks(shot, (2 * W, 2 * H), num_frames=F, step=4, draws=2, seed=0)

    K = intrinsics()
    start = tracks.coords[0].astype(np.float64) / 2.0  # target frame is 2× the shot
    sky = ~np.isfinite(shot.depth[0][np.floor(start[:, 1]).astype(int), np.floor(start[:, 0]).astype(int)])
    assert sky.sum() > 100 and (~sky).sum() > 100
    w2c0 = shot.camera_w2c_opencv[0]
    normal_world, offset = np.array([0.0, 1.0, 0.0]), WALL_Y  # wall: n·X = d
    for t in range(F):
        relative = shot.camera_w2c_opencv[t] @ np.linalg.inv(w2c0)  # camera 0 → camera t
        R, tr = relative[:3, :3], relative[:3, 3]
        n0 = w2c0[:3, :3] @ normal_world  # plane in camera 0: n0·X = d0
        d0 = offset + n0 @ w2c0[:3, 3]
        homography_wall = K @ (R + np.outer(tr, n0) / d0) @ np.linalg.inv(K)
        homography_sky = K @ R @ np.linalg.inv(K)
        for mask, homography in ((~sky, homography_wall), (sky, homography_sky)):
            p = homography @ np.stack([start[mask, 0], start[mask, 1], np.ones(mask.sum())])
            expected = (p[:2] / p[2]).T
            inside = (expected >= 0).all(axis=1) & (expected < [W, H]).all(axis=1)
            np.testing.assert_allclose(tracks.coords[t, mask] / 2.0, expected, atol=0.01)
            # Valid exactly where the point lands inside the image (nothing occludes a wall or the sky here),
            # but for the 1-px band along the wall's top edge where wall and sky pixels meet.
            agree = tracks.valid[t, mask] == inside
            assert agree.mean() > 0.97, (t, agree.mean())


def test_occluded_points_are_invalid_and_entities_need_masks():
    camera = look_at([0.0, -3.0, 1.0], [0.0, 4.0, 1.0])
    cubes = [translation([x, 1.0, 0.8]) for x in np.linspace(-1.5, 1.5, F)]  # crosses in front of the wall
    shot = make_shot([camera] * F, cubes)
    tracks, _ = cond.shot_tracks(shot, (W, H), num_frames=F, step=2, draws=1)
    start = np.floor(tracks.coords[0]).astype(int)
    for t in range(2, F):  # from frame 2 on, the cube has left its first-frame pixels and covers wall pixels
        covered = (shot.instance_mask[t, start[:, 1], start[:, 0]] == 1) & (tracks.entity == 0)
        assert covered.sum() > 20
        assert not tracks.valid[t, covered].any()
        assert tracks.valid[t, ~covered & (tracks.entity == 0)].mean() > 0.97

    meta = shot.meta.model_dump()
    meta["renders"]["instance_mask"] = False
    arrays = {k: v for k, v in shot.arrays().items() if k != "instance_mask"}
    bare = Shot.from_arrays(meta, arrays, first_frame=shot.first_frame)
    with pytest.raises(PipelineInputError, match="instance_mask"):
        cond.shot_tracks(bare, (W, H), num_frames=F, step=2, draws=1)


def test_time_map_and_grid():
    np.testing.assert_array_equal(cond.time_map(np.arange(49) / 24.0, 25), np.arange(0, 49, 2))
    picked = cond.time_map(np.arange(30) / 30.0, 25)
    assert picked[0] == 0 and picked[-1] == 29 and (np.diff(picked) >= 1).all()
    np.testing.assert_array_equal(cond.time_map(np.zeros(1), 25), np.zeros(25))
    grid = cond.grid_queries((1024, 576), rng=np.random.default_rng(0))
    assert grid.shape == (36864, 2) and grid.shape[0] >= 2 * 72 * 128
    cells = np.floor(grid / 8).astype(int).reshape(4, -1, 2)
    np.testing.assert_array_equal(cells[0], cells[3])  # one point per 8-px cell in every draw


def test_authors_track_files_round_trip(tmp_path):
    coords = np.random.default_rng(0).uniform(0, 500, (25, 40, 2)).astype(np.float32)
    valid = np.random.default_rng(1).uniform(size=(25, 40)) > 0.3
    cond.save_authors_tracks(cond.Tracks(coords, valid, (512, 288)), tmp_path)
    np.save(tmp_path / cond.COORDS_FILE, np.load(tmp_path / cond.COORDS_FILE).reshape(1, 25, 40, 2))  # their (1,F,N,2)
    loaded = cond.load_authors_tracks(tmp_path)
    assert loaded.size == (1024, 576)
    np.testing.assert_allclose(loaded.coords, coords * 2.0)
    np.testing.assert_array_equal(loaded.valid, valid)
    np.save(tmp_path / cond.VALID_FILE, valid[:, :39])
    with pytest.raises(PipelineInputError, match=cond.VALID_FILE):
        cond.load_authors_tracks(tmp_path)


@pytest.fixture(scope="module")
def bundle_shot(shot_bundle):
    return load_shot(shot_bundle)


def test_exported_bundle_tracks_follow_entities_and_cameras(bundle_shot):
    shot = bundle_shot
    tracks, shot_frames = cond.shot_tracks(shot)
    assert tracks.coords.shape == (25, 36864, 2) and tracks.valid.shape == (25, 36864)
    assert shot_frames[0] == shot.frame_numbers[0] and shot_frames[-1] == shot.frame_numbers[-1]
    index = cond.time_map(shot.time_s, 25)
    scale = np.array([shot.width / 1024, shot.height / 576])
    start = tracks.coords[0].astype(np.float64) * scale
    cols, rows = np.floor(start).astype(int).T
    depth0 = shot.depth[0, rows, cols].astype(np.float64)
    for entity in range(1, shot.num_entities + 1):
        members = (tracks.entity == entity)
        assert members.sum() > 10, entity
        # Second route: entity pose in the camera frame (scale removed, so use it only for rigid motion).
        K0 = shot.intrinsics[0]
        cam0 = (np.linalg.inv(K0) @ np.stack([start[members, 0], start[members, 1], np.ones(members.sum())])) \
            * depth0[members]
        pose0 = shot.entity_cam_opencv[0, entity - 1]
        local = np.linalg.inv(pose0) @ np.vstack([cam0, np.ones(members.sum())])
        for j, frame in enumerate(index):
            cam_t = shot.entity_cam_opencv[frame, entity - 1] @ local
            pix = shot.intrinsics[frame] @ cam_t[:3]
            expected = (pix[:2] / pix[2]).T
            visible = tracks.valid[j, members]
            np.testing.assert_allclose(tracks.coords[j, members][visible] * scale, expected[visible], atol=0.01)
    # Background through Blender-axis cameras: X_world = c2w_bl · diag(1,-1,-1) · X_cv.
    background = (tracks.entity == 0) & np.isfinite(depth0)
    cam0 = (np.linalg.inv(shot.intrinsics[0]) @ np.stack([start[background, 0], start[background, 1],
                                                          np.ones(background.sum())])) * depth0[background]
    world = shot.camera_c2w_blender[0] @ CV_FROM_BLENDER @ np.vstack([cam0, np.ones(background.sum())])
    for j, frame in enumerate(index):
        cam_t = CV_FROM_BLENDER @ np.linalg.inv(shot.camera_c2w_blender[frame]) @ world
        pix = shot.intrinsics[frame] @ cam_t[:3]
        visible = tracks.valid[j, background]
        np.testing.assert_allclose(tracks.coords[j, background][visible] * scale, (pix[:2] / pix[2]).T[visible],
                                   atol=0.01)
    # Visible tracks sit on their own entity in that frame's render (exact masks, not estimates).
    last = index[-1]
    end = np.floor(tracks.coords[-1].astype(np.float64) * scale).astype(int)
    visible = tracks.valid[-1]
    on_own = shot.instance_mask[last, end[visible, 1], end[visible, 0]] == tracks.entity[visible]
    assert on_own.mean() > 0.95
    assert 0.3 < visible.mean() <= 1.0
