"""NumPy projection of points and tight 2D boxes (no bpy): the exact 2D side of the export.

Camera space is OpenCV (x right, y down, z forward); pixels have their origin at the top-left image corner and
pixel centres at +0.5, matching the K of :mod:`.camera`.
"""

import functools
import itertools
import math

import numpy as np

_FC_ROW, _FC_COL = np.array([0, 1, 0, 1]), np.array([0, 1, 2, 2])  # fx, fy, cx, cy in K


def transform(matrices, points):
    """Apply (..., 4, 4) affine ``matrices`` to (..., V, 3) ``points``; returns (..., V, 3) float64 (broadcasting)."""
    return points @ np.swapaxes(matrices[..., :3, :3], -1, -2) + matrices[..., None, :3, 3]


def project(K, points_cam):
    """Pixels (..., V, 2) of camera-space points (..., V, 3) under K (..., 3, 3); meaningless where z <= 0."""
    z = points_cam[..., 2:]
    z = np.where(np.abs(z) < 1e-12, 1e-12, z)  # a point on the camera plane projects to infinity, not NaN
    fc = K[..., None, _FC_ROW, _FC_COL]  # (..., 1, 4): fx, fy, cx, cy
    uv = points_cam[..., :2] / z
    uv *= fc[..., :2]
    uv += fc[..., 2:]
    return uv


def tight_boxes(points_cam, K, width, height, near, edges=None):
    """Tight 2D boxes of geometry in front of the near plane, clipped to the image.

    points_cam: (F, V, 3) float64 (or float32) vertices in OpenCV camera space (any length unit, same as ``near``);
    K: (F, 3, 3) float64 with positive focal lengths; width, height: image size in pixels; near: the near-plane
    distance (camera clip start), a scalar or (F,);
    edges: optional (E, 2) int vertex indices. Where an edge crosses the near plane, its crossing point joins the
    vertices in front, so geometry straddling the camera gives the exact box of its visible part, not of its vertices.
    Returns boxes (F, 4) float64 ``x0, y0, x1, y1`` in pixels (zeros where invalid) and valid (F,) bool: some of the
    geometry projects inside the image.
    """
    return _tight_boxes(np.moveaxis(points_cam, -1, 0), K, width, height, near, edges)


def _tight_boxes(xyz, K, width, height, near, edges):
    """:func:`tight_boxes` of component-major points ``xyz`` (3, F, V): every pass then runs along V (contiguous
    rows when the caller's layout allows), not along a trailing axis of length 2 or 3 (10x slower on many frames)."""
    near = np.reshape(np.asarray(near, dtype=np.float64), (-1, 1))  # (F or 1, 1)
    front = xyz[2] > near  # (F, V)
    keep = front
    in_front = np.logical_and.reduce(front, axis=None)  # the common case: no clipping, no masking
    if not in_front and edges is not None and len(edges):
        a, b = edges[:, 0], edges[:, 1]
        crossing = front[:, a] != front[:, b]  # (F, E)
        if crossing.any():
            pa, pb = xyz[:, :, a], xyz[:, :, b]  # (3, F, E)
            with np.errstate(divide="ignore", invalid="ignore"):
                t = (near - pa[2]) / (pb[2] - pa[2])
            t = np.where(crossing, t, 0.0)  # edges that do not cross are masked out below anyway
            cut = pa + t * (pb - pa)
            cut[2] = near  # exact, so the projection does not wobble with rounding
            xyz = np.concatenate([xyz, cut], axis=2)
            keep = np.concatenate([keep, crossing], axis=1)
    z = xyz[2]
    if not in_front:  # a point on the camera plane projects far off, not to NaN
        z = np.where(np.abs(z) < 1e-12, 1e-12, z)
    ray = xyz[:2] / z  # (2, F, V'): x / z, y / z
    # The focal lengths are positive, so the extreme pixels are those of the extreme rays: K applies to (2, F) only.
    if in_front and keep.size:
        lo, hi = ray.min(axis=2), ray.max(axis=2)  # (2, F)
    else:
        lo = np.where(keep, ray, np.inf).min(axis=2, initial=np.inf)  # initial: no vertices at all
        hi = np.where(keep, ray, -np.inf).max(axis=2, initial=-np.inf)
    fc = K[:, _FC_ROW, _FC_COL].T  # (4, F): fx, fy, cx, cy
    limit = np.array([[width], [height]], dtype=np.float64)
    lo = np.clip(lo * fc[:2] + fc[2:], 0.0, limit)  # float64 from here on
    hi = np.clip(hi * fc[:2] + fc[2:], 0.0, limit)
    valid = keep.any(axis=1) & (hi > lo).all(axis=0)
    boxes = np.where(valid[:, None], np.concatenate([lo, hi]).T, 0.0)  # (F, 4): x0, y0, x1, y1
    return boxes, valid


# Frames of deforming geometry go through tight_boxes together while their camera-space vertices stay under this size
# (tight_boxes makes a few temporaries of it): every frame of a proxy at once, a few at a time for a dense mesh.
_CHUNK_BYTES = 16 << 20


def deforming_boxes(obj_to_cam, geometry, K, width, height, near):
    """:func:`tight_boxes` of one entity whose geometry changes over the frames (armatures, modifiers, shape keys).

    obj_to_cam: (F, 4, 4) float64 object-to-OpenCV-camera matrices (Blender units, as ``near``); K (F, 3, 3) in
    pixels; width, height: image size in pixels; near: (F,) near-plane distances. ``geometry`` as the frame
    loop read it (a :class:`.sampling.Geometry`): ``vertices`` (F, V, 3) float32 with ``edges`` (E, 2) int when only
    positions move, or F per-frame (V_f, 3) arrays with F per-frame (E_f, 2) edges; ``edges`` is read only where some
    vertex lies behind the near plane. Returns boxes (F, 4) float64 and valid (F,) bool.
    Frames that share one topology are projected together, in chunks of at most ``_CHUNK_BYTES``, in float32
    (Blender's own vertex and matrix precision, as :func:`rigid_boxes`); frames whose topology differs from their
    chunk's first (a Build modifier, changing subdivision levels) one by one.
    """
    vertices = geometry.vertices
    n_frames = len(obj_to_cam)
    fixed = isinstance(vertices, np.ndarray)
    boxes, valid = np.zeros((n_frames, 4)), np.zeros(n_frames, dtype=bool)
    widest = vertices.shape[1] if fixed else max((len(v) for v in vertices), default=0)
    step = max(1, _CHUNK_BYTES // (12 * max(1, widest)))
    for start in range(0, n_frames, step):
        frames = range(start, min(start + step, n_frames))
        if fixed or _same_topology(vertices, geometry.edges, frames):
            f = slice(frames.start, frames.stop)
            xyz = _camera_points(obj_to_cam[f], vertices[f] if fixed else np.stack(vertices[f]))
            edges = None
            if np.minimum.reduce(xyz[2], axis=None, initial=np.inf) <= np.maximum.reduce(near[f]):
                edges = geometry.edges if fixed else geometry.edges[start]
            boxes[f], valid[f] = _tight_boxes(xyz, K[f], width, height, near[f], edges)
            continue
        for f in frames:
            box, ok = _tight_boxes(_camera_points(obj_to_cam[f:f + 1], vertices[f][None]), K[f:f + 1], width, height,
                                   near[f], geometry.edges[f])
            boxes[f], valid[f] = box[0], ok[0]
    return boxes, valid


def _same_topology(vertices, edges, frames):
    """True when every frame of ``frames`` (a range) has the vertex count and the edges of the first."""
    first = frames.start
    if any(len(vertices[f]) != len(vertices[first]) or edges[f].shape != edges[first].shape for f in frames):
        return False
    stacked = np.stack(edges[frames.start:frames.stop])
    return bool(np.logical_and.reduce(stacked == edges[first], axis=None))


def _camera_points(obj_to_cam, local):
    """(3, F, V) float32 camera-space points, component-major, from (F, 4, 4) matrices and (F, V, 3) float32 local
    points (a float32 product: several times faster than a mixed float64 one, at Blender's own precision)."""
    rows = obj_to_cam[:, :3].astype(np.float32)  # (F, 3, 4)
    cam = rows[:, :, :3] @ local.transpose(0, 2, 1)  # (F, 3, V)
    cam += rows[:, :, 3:]
    return cam.transpose(1, 0, 2)


# bound_box corner order: corner k takes the max along x, y, z where these bits of k are set.
_CORNER_MAX = np.array([[0, 0, 0], [0, 0, 1], [0, 1, 1], [0, 1, 0], [1, 0, 0], [1, 0, 1], [1, 1, 1], [1, 1, 0]], bool)


class VertexStack:
    """The local vertices of N rigid entities side by side, so that each pass over all of them is one NumPy call.

    points: (V, 3) float local vertices of the N entities one after another, ``counts`` (N,) ints of them; ``sets``
    are the N (V_j, 3) views into ``points``. ``local`` is (4, V) float32, rows x, y, z, 1 (homogeneous; float32 is
    Blender's own vertex precision); ``spans`` lists ``(j, start, stop)`` for each entity j with at least one vertex
    (its columns of ``local``), ``filled`` (R,) int their indices j.
    """

    def __init__(self, points, counts):
        starts = [0, *itertools.accumulate(counts)][:-1]
        self.count = len(counts)
        self.sets = [points[start:start + count] for start, count in zip(starts, counts, strict=True)]
        self.spans = [(j, start, start + count)
                      for j, (start, count) in enumerate(zip(starts, counts, strict=True)) if count]
        self.filled = np.array([j for j, _, _ in self.spans], dtype=np.intp)
        self._index = np.array([start for _, start, _ in self.spans], dtype=np.intp)  # reduceat segment starts
        self.local = np.empty((4, len(points)), dtype=np.float32)
        self.local[:3] = points.T
        self.local[3] = 1.0

    @classmethod
    def of(cls, vertex_sets):
        """The stack of N separate (V_j, 3) arrays (copied into one)."""
        counts = [len(v) for v in vertex_sets]
        return cls(np.concatenate(vertex_sets) if sum(counts) else np.zeros((0, 3), dtype=np.float32), counts)

    def segment_min(self, values, out=None):
        """(..., R) minimum over each filled entity's vertices of (..., V) per-vertex ``values``."""
        return np.minimum.reduceat(values, self._index, axis=-1, out=out)

    def segment_max(self, values, out=None):
        """(..., R) maximum over each filled entity's vertices (see :meth:`segment_min`)."""
        return np.maximum.reduceat(values, self._index, axis=-1, out=out)

    @functools.cached_property
    def bound_boxes(self):
        """(N, 4, 8) float64 local ``bound_box`` corners as homogeneous columns (x, y, z, 1; Blender corner order):
        Blender's bounds of a mesh are the min and max of its float32 vertices, so these equal ``Object.bound_box``;
        zeros for an entity without vertices, as Blender gives."""
        out = np.zeros((self.count, 4, 8))
        out[:, 3] = 1.0
        if len(self.filled):
            lo, hi = self.segment_min(self.local[:3]), self.segment_max(self.local[:3])  # (3, R)
            out[self.filled, :3] = np.where(_CORNER_MAX.T, hi.T[:, :, None], lo.T[:, :, None])
        return out


def rigid_boxes(obj_to_cam, stack, edges_of, K, width, height, near):
    """:func:`tight_boxes` of the rigid geometry of N entities at every frame at once.

    obj_to_cam: (F, N, 4, 4) float64 object-to-OpenCV-camera matrices; stack: :class:`VertexStack` of the N entities'
    local vertices; edges_of(j) -> (E_j, 2) int edges of entity j (as in :func:`tight_boxes`), called only for an
    entity reaching behind the near plane, so they can be read on demand; K (F, 3, 3); near: scalar or (F,).
    Returns boxes (F, N, 4) and valid (F, N) bool. When every vertex of an entity is in front of the near plane (the
    common case) its box corners are ``f * min(x / z) + c`` and ``f * max(x / z) + c`` (f > 0, so those are the min
    and max of the projections) over all frames and entities in a few float32 array passes: Blender's own vertex and
    matrix precision, within ~1e-4 px of the float64 :func:`tight_boxes` at 1000 px and half the memory traffic. An
    entity reaching behind the near plane goes through :func:`tight_boxes` in float64 with its edges.
    """
    n_frames, n_ent = obj_to_cam.shape[:2]
    near = np.asarray(near, dtype=np.float64)
    near = near.reshape(1).repeat(n_frames) if near.ndim == 0 else near
    filled = stack.filled
    boxes = valid = None  # allocated only when some entity is off the fast path
    if len(filled) < n_ent:
        boxes, valid = np.zeros((n_frames, n_ent, 4)), np.zeros((n_frames, n_ent), dtype=bool)
        if not len(filled):
            return boxes, valid
    # Camera-space vertices as (3, F, V): one (3F, 4) @ (4, V_j) product per entity into its columns. x, y and z are
    # then contiguous (F, V) blocks, so the division and the per-entity min / max run along contiguous rows.
    rows = np.empty((n_ent, 3, n_frames, 4), dtype=np.float32)
    rows[...] = obj_to_cam[:, :, :3].transpose(1, 2, 0, 3)
    rows = rows.reshape(n_ent, 3 * n_frames, 4)
    cam = np.empty((3 * n_frames, stack.local.shape[1]), dtype=np.float32)
    for j, start, stop in stack.spans:
        np.matmul(rows[j], stack.local[:, start:stop], out=cam[:, start:stop])
    cam = cam.reshape(3, n_frames, -1)
    z = cam[2]
    fast = None  # over the filled entities; None: all of them
    if np.minimum.reduce(z, axis=None) <= np.maximum.reduce(near):  # some geometry may reach behind the near plane
        fast = ~np.logical_or.reduce(stack.segment_min(z) <= near[:, None], axis=0)
        if boxes is None and not np.logical_and.reduce(fast):
            boxes, valid = np.zeros((n_frames, n_ent, 4)), np.zeros((n_frames, n_ent), dtype=bool)
        for k in (~fast).nonzero()[0].tolist():
            j, start, stop = stack.spans[k]
            points = (stack.sets[j] @ obj_to_cam[:, j, :3, :3].transpose(2, 1, 0).reshape(3, -1)
                      + obj_to_cam[:, j, :3, 3].T.reshape(-1)).reshape(-1, 3, n_frames)
            boxes[:, j], valid[:, j] = _tight_boxes(points.transpose(1, 2, 0), K, width, height, near, edges_of(j))
            z[:, start:stop] = 1.0  # keeps the shared division below finite; this entity's result is not used
        if not np.logical_or.reduce(fast):
            return boxes, valid
    # (2, F, V): x / z, y / z, in place (a fresh buffer costs more in cache misses). A reciprocal and a product run
    # 3x faster than NumPy's float32 division here (within 2 ulp).
    ray = cam[:2]
    ray *= np.reciprocal(z)
    extremes = np.empty((2, 2, n_frames, len(filled)), dtype=np.float32)  # (min / max, x / y, F, R)
    stack.segment_min(ray, out=extremes[0])  # into float32: a float64 ``out`` makes reduceat cast element-wise (2x)
    stack.segment_max(ray, out=extremes[1])
    fc = K[:, _FC_ROW, _FC_COL].T[:, :, None]  # (4, F, 1): fx, fy, cx, cy
    corners = extremes * fc[:2]  # float64 from here on
    corners += fc[2:]
    np.maximum(corners, 0.0, out=corners)  # np.clip costs 5x these two
    np.minimum(corners, np.array([width, height], dtype=np.float64)[:, None, None], out=corners)
    ok = np.logical_and.reduce(corners[1] > corners[0], axis=0)  # (F, R)
    corners *= ok
    out = corners.transpose(2, 3, 0, 1).reshape(n_frames, -1, 4)  # x0, y0, x1, y1
    if boxes is None:  # every entity has vertices, all in front of the near plane: the common case
        return out, ok
    keep = filled if fast is None else filled[fast]
    boxes[:, keep], valid[:, keep] = (out, ok) if fast is None else (out[:, fast], ok[:, fast])
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
    count = math.prod(lead)
    flat = np.empty((count, 10))
    flat[:, 0] = 1.0
    flat[:, 1:] = rot.reshape(count, 9)
    mixed = flat @ _CANDIDATES  # (M, 20)
    best = mixed[:, :16].reshape(-1, 4, 4)[np.arange(count), mixed[:, 16:].argmax(axis=1)]
    best /= np.sqrt(np.add.reduce(best * best, axis=1))[:, None]
    q = best.reshape(*lead, 4)
    if not count:
        return q
    # Flip frame f when its dot with frame f-1 (after that one's own flip) is negative: the running parity of the
    # negative raw dots, with frame 0 flipped when its w < 0.
    flip = np.empty(lead, dtype=bool)
    np.less(q[0, ..., 0], 0.0, out=flip[0])
    np.less(np.add.reduce(q[1:] * q[:-1], axis=-1), 0.0, out=flip[1:])
    np.logical_xor.accumulate(flip, axis=0, out=flip)
    np.negative(q, out=q, where=flip[..., None])
    return q
