"""NumPy projection of points and tight 2D boxes (no bpy): the exact 2D side of the export.

Camera space is OpenCV (x right, y down, z forward); pixels have their origin at the top-left image corner and
pixel centres at +0.5, matching the K of :mod:`.camera`.
"""

import numpy as np


def transform(matrices, points):
    """Apply (..., 4, 4) affine ``matrices`` to (..., V, 3) ``points``; returns (..., V, 3) float64 (broadcasting)."""
    return points @ np.swapaxes(matrices[..., :3, :3], -1, -2) + matrices[..., None, :3, 3]


def project(K, points_cam):
    """Pixels (..., V, 2) of camera-space points (..., V, 3) under K (..., 3, 3); meaningless where z <= 0."""
    z = points_cam[..., 2]
    z = np.where(np.abs(z) < 1e-12, 1e-12, z)  # a point on the camera plane projects to infinity, not NaN
    x = points_cam[..., 0] / z
    y = points_cam[..., 1] / z
    fx, fy = K[..., 0, 0][..., None], K[..., 1, 1][..., None]
    cx, cy = K[..., 0, 2][..., None], K[..., 1, 2][..., None]
    return np.stack([fx * x + cx, fy * y + cy], axis=-1)


def tight_boxes(points_cam, K, width, height, near, edges=None):
    """Tight 2D boxes of geometry in front of the near plane, clipped to the image.

    points_cam: (F, V, 3) float64 vertices in OpenCV camera space (any length unit, same as ``near``);
    K: (F, 3, 3) float64; width, height: image size in pixels; near: the near-plane distance (camera clip start),
    a scalar or (F,);
    edges: optional (E, 2) int vertex indices. Where an edge crosses the near plane, its crossing point joins the
    vertices in front, so geometry straddling the camera gives the exact box of its visible part, not of its vertices.
    Returns boxes (F, 4) float64 ``x0, y0, x1, y1`` in pixels (zeros where invalid) and valid (F,) bool: some of the
    geometry projects inside the image.
    """
    near = np.reshape(np.asarray(near, dtype=np.float64), (-1, 1))
    z = points_cam[..., 2]
    front = z > near
    uv = project(K, points_cam)
    keep = front
    if edges is not None and len(edges):
        a, b = edges[:, 0], edges[:, 1]
        crossing = front[:, a] != front[:, b]
        if crossing.any():
            pa, pb = points_cam[:, a], points_cam[:, b]
            with np.errstate(divide="ignore", invalid="ignore"):
                t = (near - pa[..., 2]) / (pb[..., 2] - pa[..., 2])
            t = np.where(crossing, t, 0.0)  # edges that do not cross are masked out below anyway
            cut = pa + t[..., None] * (pb - pa)
            cut[..., 2] = near  # exact, so the projection does not wobble with rounding
            uv = np.concatenate([uv, project(K, cut)], axis=1)
            keep = np.concatenate([keep, crossing], axis=1)
    if keep.all():  # the common case: everything in front, no masking needed
        lo, hi = uv.min(axis=1), uv.max(axis=1)
    else:
        lo = np.where(keep[..., None], uv, np.inf).min(axis=1)
        hi = np.where(keep[..., None], uv, -np.inf).max(axis=1)
    limit = np.array([width, height], dtype=np.float64)
    lo = np.clip(lo, 0.0, limit)
    hi = np.clip(hi, 0.0, limit)
    valid = keep.any(axis=1) & (hi > lo).all(axis=1)
    boxes = np.where(valid[:, None], np.concatenate([lo, hi], axis=1), 0.0)
    return boxes, valid


def rigid_boxes(obj_to_cam, vertices, K, width, height, near, edges=None):
    """:func:`tight_boxes` of rigid geometry at every frame at once.

    obj_to_cam: (F, 4, 4) float64 object-to-OpenCV-camera matrices; vertices: (V, 3) float64 local vertices;
    K (F, 3, 3); near: scalar or (F,); edges as in :func:`tight_boxes`. Returns the same boxes (F, 4) and valid (F,)
    bool, bit for bit: when every vertex is in front of the near plane (the common case) the box corners are
    ``f * min(x / z) + c`` and ``f * max(x / z) + c`` (f > 0, so that is the min and max of the projections) from one
    matrix product over all frames, instead of projecting every vertex into an (F, V, 2) array.
    """
    n_frames = len(obj_to_cam)
    near = np.broadcast_to(np.asarray(near, dtype=np.float64), (n_frames,))
    homogeneous = np.concatenate([vertices.T, np.ones((1, len(vertices)))])  # (4, V)
    x, y, z = (obj_to_cam[:, :3].reshape(-1, 4) @ homogeneous).reshape(n_frames, 3, -1).transpose(1, 0, 2)
    if len(vertices) == 0 or (z.min(axis=1) <= near).any():
        return tight_boxes(np.stack([x, y, z], axis=-1), K, width, height, near, edges)
    rx, ry = x / z, y / z
    fx, fy, cx, cy = K[:, 0, 0], K[:, 1, 1], K[:, 0, 2], K[:, 1, 2]
    lo = np.stack([fx * rx.min(axis=1) + cx, fy * ry.min(axis=1) + cy], axis=1)
    hi = np.stack([fx * rx.max(axis=1) + cx, fy * ry.max(axis=1) + cy], axis=1)
    limit = np.array([width, height], dtype=np.float64)
    lo = np.clip(lo, 0.0, limit)
    hi = np.clip(hi, 0.0, limit)
    valid = (hi > lo).all(axis=1)
    return np.where(valid[:, None], np.concatenate([lo, hi], axis=1), 0.0), valid


def quaternions_wxyz(rot):
    """Unit quaternions (w, x, y, z) of proper rotation matrices: (F, ..., 3, 3) float64 -> (F, ..., 4) float64.

    Signs are chosen along the first (frame) axis so consecutive quaternions have a non-negative dot product
    (no 360° jumps when interpolating); the first frame has w >= 0.
    """
    m = rot
    trace = m[..., 0, 0] + m[..., 1, 1] + m[..., 2, 2]
    # Each row is 4·q_i·q for the component i that is largest, which keeps the division well conditioned.
    cands = np.stack([
        np.stack([1 + trace, m[..., 2, 1] - m[..., 1, 2], m[..., 0, 2] - m[..., 2, 0], m[..., 1, 0] - m[..., 0, 1]], -1),
        np.stack([m[..., 2, 1] - m[..., 1, 2], 1 + m[..., 0, 0] - m[..., 1, 1] - m[..., 2, 2],
                  m[..., 0, 1] + m[..., 1, 0], m[..., 0, 2] + m[..., 2, 0]], -1),
        np.stack([m[..., 0, 2] - m[..., 2, 0], m[..., 0, 1] + m[..., 1, 0],
                  1 - m[..., 0, 0] + m[..., 1, 1] - m[..., 2, 2], m[..., 1, 2] + m[..., 2, 1]], -1),
        np.stack([m[..., 1, 0] - m[..., 0, 1], m[..., 0, 2] + m[..., 2, 0], m[..., 1, 2] + m[..., 2, 1],
                  1 - m[..., 0, 0] - m[..., 1, 1] + m[..., 2, 2]], -1),
    ], -2)
    diag = np.stack([trace, m[..., 0, 0], m[..., 1, 1], m[..., 2, 2]], -1)
    best = np.take_along_axis(cands, diag.argmax(-1)[..., None, None], -2)[..., 0, :]
    q = best / np.linalg.norm(best, axis=-1, keepdims=True)
    if not len(q):
        return q
    # Flip frame f when its dot with frame f-1 (after that one's own flip) is negative: the running product of the
    # signs of the raw dots, with frame 0 signed so that w >= 0.
    sign = np.where((q[1:] * q[:-1]).sum(-1) < 0, -1.0, 1.0)
    sign = np.cumprod(np.concatenate([np.where(q[:1, ..., 0] < 0, -1.0, 1.0), sign]), axis=0)
    return q * sign[..., None]
