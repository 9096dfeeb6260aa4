"""Control preview: what a pipeline will receive, drawn over the shot's first frame with NumPy (no OpenCV here).

Inputs are the exported bundle's arrays (DESIGN bundle table). Pixel coordinates follow the bundle: origin at the
top-left image corner, pixel centres at +0.5, so a point (x, y) falls in pixel column ``floor(x)``, row
``floor(y)``. No bpy here: the operator loads the PNG and writes the frames.
"""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np

# What each pipeline is conditioned on (specs/pipelines.md): drawn layers per pipeline id.
LAYERS = {
    "3dtrajmaster": ("boxes", "axes"),
    "magicmotion": ("masks", "boxes"),
    "posetraj": ("tracks",),
    "trajectory-attention": ("tracks",),
    "trajectorycrafter": ("masks",),
}
AXIS_LENGTH_M = 0.5
AXIS_COLOURS = np.array([[255, 60, 60], [60, 230, 60], [70, 120, 255]], np.uint8)  # local x, y, z


def read_bundle(path) -> tuple[dict, dict[str, np.ndarray], bytes]:
    """(shot.json, arrays.npz as a dict, first_frame.png bytes) from a bundle zip. Raises ``KeyError`` naming a
    missing member."""
    with zipfile.ZipFile(path) as z:
        meta = json.loads(z.read("shot.json"))
        with np.load(io.BytesIO(z.read("arrays.npz"))) as npz:
            arrays = {k: npz[k] for k in npz.files}
        png = z.read("frames/first_frame.png")
    return meta, arrays, png


def _stamp(img: np.ndarray, xy: np.ndarray, colour, radius: int = 1) -> None:
    """Paint squares of side 2·radius+1 centred on the pixels holding points ``xy`` (M, 2) pixel-corner coords."""
    h, w = img.shape[:2]
    cols, rows = np.floor(xy[:, 0]).astype(int), np.floor(xy[:, 1]).astype(int)
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            r, c = rows + dy, cols + dx
            ok = (r >= 0) & (r < h) & (c >= 0) & (c < w)
            img[r[ok], c[ok]] = colour


def _segment(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    n = int(np.ceil(np.abs(b - a).max())) + 2
    t = np.linspace(0.0, 1.0, n)[:, None]
    return a[None] * (1 - t) + b[None] * t


def draw_controls(first_frame: np.ndarray, arrays: dict[str, np.ndarray], colours: np.ndarray,
                  pipeline: str) -> np.ndarray:
    """The preview video: (F, H, W, 3) uint8 RGB.

    first_frame: (H, W, 3) uint8 RGB render; arrays: the bundle arrays (``track_2d`` (F,N,2) px, ``track_in_frame``
    (F,N), ``box_2d`` (F,N,4) x0,y0,x1,y1 px, ``box_2d_valid`` (F,N), ``entity_cam_opencv`` (F,N,4,4) OpenCV camera
    frame in metres, ``intrinsics`` (F,3,3), optional ``instance_mask`` (F,H,W) uint8 ids); colours: (N, 3) uint8
    entity colours; pipeline: a pipeline id (unknown ids get tracks and boxes).
    """
    layers = LAYERS.get(pipeline, ("tracks", "boxes"))
    frames = arrays["track_2d"].shape[0]
    base = (first_frame.astype(np.float32) * 0.6).astype(np.uint8)  # dimmed so the controls stand out
    out = np.repeat(base[None], frames, axis=0)
    mask = arrays.get("instance_mask")
    for f in range(frames):
        img = out[f]
        if "masks" in layers and mask is not None:
            ids = mask[f]
            for k, colour in enumerate(colours):
                sel = ids == k + 1
                img[sel] = (img[sel] * 0.45 + colour * 0.55).astype(np.uint8)
        for k, colour in enumerate(colours):
            if "boxes" in layers and arrays["box_2d_valid"][f, k]:
                x0, y0, x1, y1 = arrays["box_2d"][f, k]
                corners = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], np.float64)
                for i in range(4):
                    _stamp(img, _segment(corners[i], corners[(i + 1) % 4]), colour, 0)
            if "tracks" in layers:
                seen = arrays["track_in_frame"][: f + 1, k]
                path = arrays["track_2d"][: f + 1, k][seen]
                for a, b in zip(path[:-1], path[1:], strict=False):
                    _stamp(img, _segment(a, b), colour, 0)
                if seen[-1]:
                    _stamp(img, path[-1:], colour, 3)
            if "axes" in layers:
                pose = arrays["entity_cam_opencv"][f, k]
                K = arrays["intrinsics"][f]
                ends = pose[:3, 3][None] + AXIS_LENGTH_M * pose[:3, :3].T  # origin + each local axis, camera frame
                points = np.vstack([pose[:3, 3][None], ends])
                if (points[:, 2] > 1e-3).all():
                    uv = (K @ points.T).T
                    uv = uv[:, :2] / uv[:, 2:3]
                    for axis in range(3):
                        _stamp(img, _segment(uv[0], uv[axis + 1]), AXIS_COLOURS[axis], 1)
    return out
