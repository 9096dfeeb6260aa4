"""A synthetic, geometrically exact shot (the contract's conventions computed independently with NumPy), used by the
shot tests, the contract test, the pipeline tests and bench/bundle.py.

Scene: ground plane z = 0, a camera orbiting, rolling and zooming while it looks at the origin, N box entities sliding and
turning on the ground. Entities render as camera-facing discs at their origin's planar depth, so the depth map at a
visible track equals ``track_depth`` exactly, as in a real export.
"""

from __future__ import annotations

import cv2
import numpy as np
from trajplate.shot import Shot

# Blender bound_box corner order for a local box [-1, 1]^3.
BOUND_BOX = np.array(
    [[-1, -1, -1], [-1, -1, 1], [-1, 1, 1], [-1, 1, -1], [1, -1, -1], [1, -1, 1], [1, 1, 1], [1, 1, -1]], float
)
CV_FROM_BLENDER = np.diag([1.0, -1.0, -1.0, 1.0])
COLORS = [[230, 60, 50], [40, 160, 220], [250, 200, 40], [120, 220, 90]]


def _look_at_c2w_blender(position: np.ndarray, target: np.ndarray, roll: float) -> np.ndarray:
    """(4, 4) camera-to-world with Blender camera axes (x right, y up, looking down -z), rolled by ``roll`` rad."""
    forward = (target - position) / np.linalg.norm(target - position)
    level_right = np.cross(forward, [0.0, 0.0, 1.0])
    level_right /= np.linalg.norm(level_right)
    level_up = np.cross(level_right, forward)
    right = np.cos(roll) * level_right + np.sin(roll) * level_up
    up = np.cross(right, forward)
    c2w = np.eye(4)
    c2w[:3, :3] = np.stack([right, up, -forward], axis=1)
    c2w[:3, 3] = position
    return c2w


def synthetic_parts(
    num_frames: int = 12,
    width: int = 96,
    height: int = 64,
    num_entities: int = 2,
    *,
    renders: bool = True,
    fps: float = 24.0,
    frame_start: int = 1,
    frame_step: int = 1,
) -> tuple[dict, dict[str, np.ndarray], np.ndarray | None]:
    """(meta dict for shot.json, arrays by name, first frame (H, W, 3) uint8 RGB or None) of a valid shot."""
    f_count, n = num_frames, num_entities
    frames = np.arange(frame_start, frame_start + frame_step * f_count, frame_step, dtype=np.int32)
    u = np.linspace(0.0, 1.0, f_count)
    lens = 35.0 + 10.0 * u  # animated focal length: K changes per frame
    sensor = 36.0
    intrinsics = np.zeros((f_count, 3, 3))
    intrinsics[:, 0, 0] = intrinsics[:, 1, 1] = lens / sensor * width  # sensor fit horizontal, square pixels
    intrinsics[:, 0, 2], intrinsics[:, 1, 2], intrinsics[:, 2, 2] = width / 2, height / 2, 1.0
    angle = 0.6 * u - 0.3
    cam_pos = np.stack([9.0 * np.sin(angle), -9.0 * np.cos(angle), 2.5 + 0.5 * u], axis=1)
    c2w = np.stack(
        [_look_at_c2w_blender(p, np.array([0.0, 0.0, 0.5]), 0.08 * a) for p, a in zip(cam_pos, angle, strict=True)]
    )
    w2c = CV_FROM_BLENDER @ np.linalg.inv(c2w)

    k = np.arange(n)[None, :]
    yaw = (0.4 + 0.3 * k) * (1.0 + u[:, None])
    position = np.stack(
        [(k - (n - 1) / 2) * 2.0 + 1.5 * u[:, None] * (-1) ** k, 0.8 * k - 0.5 + 0 * u[:, None], 0.5 + 0 * yaw], axis=-1
    )
    scale = np.array([0.6, 0.4, 0.5])
    rotation = np.zeros((f_count, n, 3, 3))
    rotation[..., 0, 0] = rotation[..., 1, 1] = np.cos(yaw)
    rotation[..., 0, 1], rotation[..., 1, 0] = -np.sin(yaw), np.sin(yaw)
    rotation[..., 2, 2] = 1.0
    rigid = np.zeros((f_count, n, 4, 4))
    rigid[..., :3, :3], rigid[..., :3, 3], rigid[..., 3, 3] = rotation, position, 1.0
    world = rigid.copy()
    world[..., :3, :3] = rotation * scale  # columns scaled: R @ diag(scale)
    quaternion = np.stack([np.cos(yaw / 2), 0 * yaw, 0 * yaw, np.sin(yaw / 2)], axis=-1)
    entity_cam = w2c[:, None] @ rigid

    origin_cam = entity_cam[..., :3, 3]
    track_depth = origin_cam[..., 2]
    projected = (intrinsics[:, None] @ origin_cam[..., None])[..., 0]
    track_2d = projected[..., :2] / projected[..., 2:]
    in_frame = (
        (track_depth > 0)
        & (track_2d[..., 0] >= 0)
        & (track_2d[..., 0] < width)
        & (track_2d[..., 1] >= 0)
        & (track_2d[..., 1] < height)
    )
    corners_world = (world[..., None, :3, :3] @ BOUND_BOX[:, :, None])[..., 0] + world[..., None, :3, 3]
    corners_cam = (w2c[:, None, None, :3, :3] @ corners_world[..., None])[..., 0] + w2c[:, None, None, :3, 3]
    corners_px = (intrinsics[:, None, None] @ corners_cam[..., None])[..., 0]
    corners_px = corners_px[..., :2] / corners_px[..., 2:]
    box = np.concatenate([corners_px.min(axis=2), corners_px.max(axis=2)], axis=-1)
    box = np.clip(box, 0.0, [width, height, width, height])
    box_valid = (corners_cam[..., 2] > 0).all(axis=2) & (box[..., 2] > box[..., 0]) & (box[..., 3] > box[..., 1])
    box[~box_valid] = 0.0

    arrays = {
        "frame_numbers": frames,
        "time_s": (frames - frames[0]) / fps,
        "camera_c2w_blender": c2w,
        "camera_w2c_opencv": w2c,
        "intrinsics": intrinsics,
        "entity_world": world,
        "entity_position": position,
        "entity_quaternion_wxyz": quaternion,
        "entity_cam_opencv": entity_cam,
        "track_2d": track_2d,
        "track_depth": track_depth,
        "track_in_frame": in_frame,
        "track_visible": in_frame.copy(),
        "box_2d": box,
        "box_2d_valid": box_valid,
        "box_3d_world": corners_world,
    }
    first_frame = None
    if renders:
        depth, mask = _render(arrays, width, height)
        arrays["depth"], arrays["instance_mask"] = depth, mask
        rows = np.arange(f_count)[:, None]
        px = np.clip(np.floor(track_2d).astype(int), 0, [width - 1, height - 1])
        arrays["track_visible"] = in_frame & (mask[rows, px[..., 1], px[..., 0]] == np.arange(1, n + 1))
        shade = np.where(np.isfinite(depth[0]), 200 - np.minimum(depth[0], 40) * 3, 90).astype(np.uint8)
        first_frame = np.repeat(shade[..., None], 3, axis=-1)
        for entity in range(n):
            first_frame[mask[0] == entity + 1] = COLORS[entity % len(COLORS)]
    meta = {
        "format_version": "1.0",
        "generator": {"name": "TrajPlate", "addon_version": "0.1.0", "blender_version": "synthetic"},
        "scene": "Scene",
        "camera": "Camera",
        "cameras": ["Camera"] * f_count,
        "blend_file": "",
        "fps": fps,
        "frame_start": int(frames[0]),
        "frame_end": int(frames[-1]),
        "frame_step": frame_step,
        "frame_count": f_count,
        "resolution": [width, height],
        "pixel_aspect": [1.0, 1.0],
        "camera_settings": {
            "type": "PERSP",
            "lens_mm": float(lens[0]),
            "sensor_width_mm": sensor,
            "sensor_height_mm": 24.0,
            "sensor_fit": "HORIZONTAL",
            "shift_x": 0.0,
            "shift_y": 0.0,
            "clip_start": 0.1,
            "clip_end": 1000.0,
        },
        "unit_scale": 1.0,
        "entities": [
            {
                "id": e + 1,
                "name": f"Entity.{e + 1:03d}",
                "prompt": f"a box number {e + 1}",
                "forward_axis": "-Y",
                "up_axis": "Z",
                "color": COLORS[e % len(COLORS)],
                "kind": "object",
            }
            for e in range(n)
        ],
        "scene_prompt": "boxes sliding on a plain floor",
        "location_prompt": "an empty studio",
        "conventions": {"world": "Blender, Z up, metres"},
        "renders": {"depth": renders, "instance_mask": renders, "engine": "CYCLES" if renders else ""},
    }
    return meta, arrays, first_frame


def _render(arrays: dict, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Planar depth (F, H, W) float32 (inf background) and instance ids (F, H, W) uint8 at pixel centres (+0.5)."""
    f_count, n = arrays["track_depth"].shape
    cols, rows = np.arange(width) + 0.5, (np.arange(height) + 0.5)[:, None]
    depth = np.empty((f_count, height, width), np.float32)
    mask = np.zeros((f_count, height, width), np.uint8)
    for f in range(f_count):
        k = arrays["intrinsics"][f]
        c2w_cv = np.linalg.inv(arrays["camera_w2c_opencv"][f])
        # World z of the ray K^-1 (u, v, 1) (camera z = 1, so the ray parameter is planar depth); ground is z = 0.
        ray_z = c2w_cv[2, 0] * (cols - k[0, 2]) / k[0, 0] + c2w_cv[2, 1] * (rows - k[1, 2]) / k[1, 1] + c2w_cv[2, 2]
        with np.errstate(divide="ignore"):
            t = -c2w_cv[2, 3] / ray_z
        depth[f] = np.where((ray_z < 0) & (t > 0), t, np.inf)
        for e in range(n):
            z = arrays["track_depth"][f, e]
            if z <= 0:
                continue
            (u, v), radius = arrays["track_2d"][f, e], k[0, 0] * 0.4 / z
            x0, x1 = int(np.clip(u - radius, 0, width)), int(np.clip(np.ceil(u + radius), 0, width))
            y0, y1 = int(np.clip(v - radius, 0, height)), int(np.clip(np.ceil(v + radius), 0, height))
            disc = np.hypot(cols[x0:x1] - u, rows[y0:y1] - v) < radius
            window_depth, window_mask = depth[f, y0:y1, x0:x1], mask[f, y0:y1, x0:x1]
            wins = disc & (np.float32(z) < window_depth)
            window_depth[wins], window_mask[wins] = z, e + 1
    return depth, mask


def synthetic_shot(**kwargs) -> Shot:
    meta, arrays, first_frame = synthetic_parts(**kwargs)
    return Shot.from_arrays(meta, arrays, first_frame=first_frame)


def png(rgb: np.ndarray) -> bytes:
    """PNG bytes of an (H, W, 3) uint8 RGB image."""
    ok, data = cv2.imencode(".png", rgb[..., ::-1])
    assert ok
    return data.tobytes()
