"""NumPy projection of points and tight 2D boxes (no bpy): the exact 2D side of the export.

Camera space is OpenCV (x right, y down, z forward); pixels have their origin at the top-left image corner and
pixel centres at +0.5, matching the K of :mod:`.camera`.
"""

import math

import numpy as np


def transform(matrices, points):
    """Apply (..., 4, 4) affine ``matrices`` to (..., V, 3) ``points``; returns (..., V, 3) float64 (broadcasting)."""
    return points @ np.swapaxes(matrices[..., :3, :3], -1, -2) + matrices[..., None, :3, 3]


def project(K, points_cam):
    """Pixels (..., V, 2) of camera-space points (..., V, 3) under K (..., 3, 3); meaningless where z <= 0."""
    z = points_cam[..., 2:]
    z = np.where(np.abs(z) < 1e-12, 1e-12, z)  # a point on the camera plane projects to infinity, not NaN
    focal, centre = K[..., None, [0, 1], [0, 1]], K[..., None, [0, 1], [2, 2]]  # (..., 1, 2): fx, fy and cx, cy
    return points_cam[..., :2] / z * focal + centre


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
    if keep.size and keep.all():  # the common case: everything in front, no masking needed
        lo, hi = uv.min(axis=1), uv.max(axis=1)
    else:
        lo = np.where(keep[..., None], uv, np.inf).min(axis=1, initial=np.inf)  # initial: no vertices at all
        hi = np.where(keep[..., None], uv, -np.inf).max(axis=1, initial=-np.inf)
    limit = np.array([width, height], dtype=np.float64)
    lo = np.clip(lo, 0.0, limit)
    hi = np.clip(hi, 0.0, limit)
    valid = keep.any(axis=1) & (hi > lo).all(axis=1)
    boxes = np.where(valid[:, None], np.concatenate([lo, hi], axis=1), 0.0)
    return boxes, valid


def rigid_boxes(obj_to_cam, vertex_sets, edge_sets, K, width, height, near):
    """:func:`tight_boxes` of the rigid geometry of N entities at every frame at once.

    obj_to_cam: (F, N, 4, 4) float64 object-to-OpenCV-camera matrices; vertex_sets: N arrays (V_j, 3) float64 of
    local vertices; edge_sets: N arrays (E_j, 2) int (as in :func:`tight_boxes`); K (F, 3, 3); near: scalar or (F,).
    Returns boxes (F, N, 4) and valid (F, N) bool. When every vertex of an entity is in front of the near plane (the
    common case) its box corners are ``f * min(x / z) + c`` and ``f * max(x / z) + c`` (f > 0, so those are the min
    and max of the projections) over all frames in a few float32 array passes: Blender's own vertex and matrix
    precision, within 1e-4 px of the float64 :func:`tight_boxes` at 1000 px and half the memory traffic. An entity
    reaching behind the near plane goes through :func:`tight_boxes` in float64 with its edges.
    """
    n_frames, n_ent = obj_to_cam.shape[:2]
    near = np.full(n_frames, near, dtype=np.float64) if np.ndim(near) == 0 else np.asarray(near, dtype=np.float64)
    nearest = near.max()
    boxes = np.zeros((n_frames, n_ent, 4))
    valid = np.zeros((n_frames, n_ent), dtype=bool)
    # Per entity, camera-space vertices as (3, F, V) from one (3F, 4) @ (4, V) product of homogeneous vertices:
    # x, y and z are then contiguous (F, V) blocks, so the division and the min / max over the vertices run along
    # contiguous rows (2x faster than a (V, 3, F) layout on shot-sized inputs).
    rows = obj_to_cam[:, :, :3].transpose(1, 2, 0, 3).reshape(n_ent, 3 * n_frames, 4).astype(np.float32)
    fast, extremes = [], []  # entities in front of the near plane; their (min, max) of (x / z, y / z) per frame
    for j, (verts, edges) in enumerate(zip(vertex_sets, edge_sets, strict=True)):
        homogeneous = np.ones((4, len(verts)), dtype=np.float32)
        homogeneous[:3] = verts.T
        cam = (rows[j] @ homogeneous).reshape(3, n_frames, -1)
        z = cam[2]
        if len(verts) == 0 or (z.min() <= nearest and (z.min(axis=1) <= near).any()):
            points = (verts @ obj_to_cam[:, j, :3, :3].transpose(2, 1, 0).reshape(3, -1)
                      + obj_to_cam[:, j, :3, 3].T.reshape(-1)).reshape(-1, 3, n_frames)
            boxes[:, j], valid[:, j] = tight_boxes(points.transpose(2, 0, 1), K, width, height, near, edges)
            continue
        ray = cam[:2] / z  # (2, F, V): x / z, y / z
        fast.append(j)
        extremes.append((ray.min(axis=2), ray.max(axis=2)))
    if fast:
        focal = K[:, [0, 1], [0, 1]].T  # (2, F): fx, fy
        centre = K[:, [0, 1], [2, 2]].T  # (2, F): cx, cy
        corners = focal * np.array(extremes, dtype=np.float64) + centre  # (R, 2 min/max, 2 x/y, F)
        np.minimum(np.maximum(corners, 0.0, out=corners), [[width], [height]], out=corners)  # np.clip: 5x the cost
        ok = (corners[:, 1] > corners[:, 0]).all(axis=1)  # (R, F)
        boxes[:, fast] = (corners * ok[:, None, None]).reshape(len(fast), 4, n_frames).transpose(2, 0, 1)
        valid[:, fast] = ok.T
    return boxes, valid


def _quaternion_candidates():
    """(10, 20) float64: [1, m00, m01, m02, m10, ..., m22] @ this = 4 candidate rows (4·q_i·q for i = w, x, y, z,
    16 columns) and the 4 numbers whose largest picks the best-conditioned row (tr, m00, m11, m22)."""
    a = np.zeros((10, 20))
    m = {(i, j): 1 + 3 * i + j for i in range(3) for j in range(3)}  # row of m_ij in the input vector
    rows = [  # candidate i: 4 entries, each {input row: coefficient}
        [{0: 1, m[0, 0]: 1, m[1, 1]: 1, m[2, 2]: 1}, {m[2, 1]: 1, m[1, 2]: -1}, {m[0, 2]: 1, m[2, 0]: -1},
         {m[1, 0]: 1, m[0, 1]: -1}],
        [{m[2, 1]: 1, m[1, 2]: -1}, {0: 1, m[0, 0]: 1, m[1, 1]: -1, m[2, 2]: -1}, {m[0, 1]: 1, m[1, 0]: 1},
         {m[0, 2]: 1, m[2, 0]: 1}],
        [{m[0, 2]: 1, m[2, 0]: -1}, {m[0, 1]: 1, m[1, 0]: 1}, {0: 1, m[0, 0]: -1, m[1, 1]: 1, m[2, 2]: -1},
         {m[1, 2]: 1, m[2, 1]: 1}],
        [{m[1, 0]: 1, m[0, 1]: -1}, {m[0, 2]: 1, m[2, 0]: 1}, {m[1, 2]: 1, m[2, 1]: 1},
         {0: 1, m[0, 0]: -1, m[1, 1]: -1, m[2, 2]: 1}],
    ]
    for i, row in enumerate(rows):
        for k, entry in enumerate(row):
            for src, coef in entry.items():
                a[src, 4 * i + k] = coef
    for k, src in enumerate(([m[0, 0], m[1, 1], m[2, 2]], [m[0, 0]], [m[1, 1]], [m[2, 2]])):
        a[src, 16 + k] = 1
    return a


_CANDIDATES = _quaternion_candidates()


def quaternions_wxyz(rot):
    """Unit quaternions (w, x, y, z) of proper rotation matrices: (F, ..., 3, 3) float64 -> (F, ..., 4) float64.

    Each matrix gives 4 candidate rows ``4·q_i·q`` (Shepperd's method); the row of the largest of (trace, m00, m11,
    m22) keeps the division well conditioned. All of them are linear in the entries, so one matrix product makes them.
    Signs are chosen along the first (frame) axis so consecutive quaternions have a non-negative dot product
    (no 360° jumps when interpolating); the first frame has w >= 0.
    """
    lead = rot.shape[:-2]
    flat = np.ones((math.prod(lead), 10))
    flat[:, 1:] = rot.reshape(-1, 9)
    mixed = flat @ _CANDIDATES  # (M, 20)
    best = mixed[:, :16].reshape(-1, 4, 4)[np.arange(len(mixed)), mixed[:, 16:].argmax(-1)]
    q = (best / np.sqrt((best * best).sum(-1))[:, None]).reshape(*lead, 4)
    if not len(q):
        return q
    # Flip frame f when its dot with frame f-1 (after that one's own flip) is negative: the running product of the
    # signs of the raw dots, with frame 0 signed so that w >= 0.
    sign = np.where((q[1:] * q[:-1]).sum(-1) < 0, -1.0, 1.0)
    sign = np.cumprod(np.concatenate([np.where(q[:1, ..., 0] < 0, -1.0, 1.0), sign]), axis=0)
    return q * sign[..., None]
