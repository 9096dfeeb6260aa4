"""The export's NumPy kernels against straightforward float64 references (no Blender needed, but run with the add-on
tests): the polar factor of world matrices, quaternions, and the fast float32 rigid boxes."""

import numpy as np
import pytest

from addon.export import geometry
from addon.export.camera import rigid
from addon.export.geometry import VertexStack, deforming_boxes, quaternions_wxyz, rigid_boxes, tight_boxes


def _rotations(rng, n):
    q, r = np.linalg.qr(rng.normal(size=(n, 3, 3)))
    q *= np.sign(np.diagonal(r, axis1=-2, axis2=-1))[:, None, :]
    q[np.linalg.det(q) < 0, :, 0] *= -1  # proper rotations
    return q


def _polar(rot):
    u, _, vt = np.linalg.svd(rot)
    u[np.linalg.det(u @ vt) < 0, :, 2] *= -1
    return u @ vt


@pytest.mark.parametrize("kind", ["uniform", "axis-scale", "shear", "mirror"])
def test_rigid_is_the_proper_polar_factor(kind):
    rng = np.random.default_rng(3)
    rot = _rotations(rng, 60)
    scale = {"uniform": np.repeat(rng.uniform(0.01, 50, (60, 1)), 3, 1), "axis-scale": rng.uniform(0.1, 5, (60, 3)),
             "shear": rng.uniform(0.5, 2, (60, 3)), "mirror": rng.uniform(0.5, 2, (60, 3)) * [-1, 1, 1]}[kind]
    linear = rot * scale[:, None, :]  # columns scaled: a Blender object's loc/rot/scale matrix
    if kind == "shear":
        linear = linear @ (np.eye(3) + np.triu(rng.uniform(0.2, 0.8, (60, 3, 3)), 1))
    matrices = np.zeros((6, 10, 4, 4))
    matrices[..., :3, :3] = linear.reshape(6, 10, 3, 3).astype(np.float32)  # Blender's precision
    matrices[..., :3, 3] = rng.normal(size=(6, 10, 3))
    matrices[..., 3, 3] = 1.0
    out = rigid(matrices)
    assert out.shape == matrices.shape
    np.testing.assert_array_equal(out[..., :3, 3], matrices[..., :3, 3])
    r = out[..., :3, :3]
    np.testing.assert_allclose(r @ np.swapaxes(r, -1, -2), np.broadcast_to(np.eye(3), r.shape), atol=1e-13)
    np.testing.assert_allclose(np.linalg.det(r), 1.0, atol=1e-13)
    # Normalised columns of a float32 matrix with unequal scales are orthogonal only to float32 rounding: the fast
    # path's nearest rotation then differs from the exact polar factor by that rounding (1e-8 rad), no more.
    np.testing.assert_allclose(r, _polar(matrices[..., :3, :3]), atol=1e-7 if kind == "axis-scale" else 1e-12)


def test_quaternions_rebuild_the_rotations_and_stay_continuous():
    rng = np.random.default_rng(4)
    # A slow spin through 720 degrees about a random axis per entity: the raw quaternion would flip sign midway.
    angles = np.linspace(0, 4 * np.pi, 50)[:, None]
    axes = rng.normal(size=(3, 3))
    axes /= np.linalg.norm(axes, axis=1, keepdims=True)
    k = np.zeros((3, 3, 3))
    k[:, [2, 0, 1], [1, 2, 0]] = axes
    k -= np.swapaxes(k, -1, -2)
    rot = np.eye(3) + np.sin(angles)[..., None, None] * k + (1 - np.cos(angles))[..., None, None] * (k @ k)
    q = quaternions_wxyz(rot)
    assert q.shape == (50, 3, 4)
    np.testing.assert_allclose(np.linalg.norm(q, axis=-1), 1.0, atol=1e-14)
    w, x, y, z = np.moveaxis(q, -1, 0)
    rebuilt = np.stack([
        np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
        np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
        np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
    ], -2)
    np.testing.assert_allclose(rebuilt, rot, atol=1e-12)
    assert (q[0, :, 0] >= 0).all()
    assert ((q[1:] * q[:-1]).sum(-1) > 0).all()


def test_rigid_boxes_match_float64_reference():
    """Random entities in front of, straddling and behind the near plane, and one without vertices."""
    rng = np.random.default_rng(5)
    n_frames, width, height = 12, 640, 480
    K = np.tile([[500.0, 0, 320], [0, 500, 240], [0, 0, 1]], (n_frames, 1, 1))
    near = rng.uniform(0.05, 0.2, n_frames)
    depths = [6.0, 0.3, -3.0, 4.0]  # in front, straddling the near plane, behind, no vertices
    obj_to_cam = np.zeros((n_frames, len(depths), 4, 4))
    obj_to_cam[..., :3, :3] = _rotations(rng, n_frames * len(depths)).reshape(n_frames, len(depths), 3, 3)
    obj_to_cam[..., :3, 3] = rng.normal(scale=0.5, size=(n_frames, len(depths), 3)) + [0, 0, 1] * np.array(depths)[:, None]
    obj_to_cam[..., 3, 3] = 1.0
    verts = [rng.normal(scale=0.6, size=(300, 3)) for _ in depths[:3]] + [np.zeros((0, 3))]
    edges = [rng.integers(0, len(v), size=(400, 2)) if len(v) else np.zeros((0, 2), int) for v in verts]
    boxes, valid = rigid_boxes(obj_to_cam, VertexStack.of(verts), edges.__getitem__, K, width, height, near)
    for j, (v, e) in enumerate(zip(verts, edges, strict=True)):
        cam = v @ np.swapaxes(obj_to_cam[:, j, :3, :3], -1, -2) + obj_to_cam[:, j, None, :3, 3]
        ref_boxes, ref_valid = tight_boxes(cam, K, width, height, near, e)
        np.testing.assert_array_equal(valid[:, j], ref_valid)
        np.testing.assert_allclose(boxes[:, j], ref_boxes, atol=1e-3)
    assert valid[:, 0].all() and valid[:, 1].any() and not valid[:, 2].any() and not valid[:, 3].any()


def _reference_box(cam, K, width, height, near, edges):
    """One frame's tight box the slow, obvious way: each vertex in front, each edge crossing the near plane cut there,
    every kept point projected by K, the box of them clipped to the image; None when nothing is left or it is empty."""
    kept = [p for p in cam if p[2] > near]
    for a, b in edges:
        pa, pb = cam[a], cam[b]
        if (pa[2] > near) != (pb[2] > near):
            cut = pa + (near - pa[2]) / (pb[2] - pa[2]) * (pb - pa)
            kept.append(np.array([cut[0], cut[1], near]))
    if not kept:
        return None
    pix = np.array([(K[0, 0] * x / z + K[0, 2], K[1, 1] * y / z + K[1, 2]) for x, y, z in kept])
    lo, hi = np.clip(pix.min(0), 0, (width, height)), np.clip(pix.max(0), 0, (width, height))
    return [*lo, *hi] if (hi > lo).all() else None


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_tight_boxes_match_the_obvious_clipping(dtype):
    """Random geometry in front of, straddling and behind the near plane, off to the side, and no vertices at all."""
    rng = np.random.default_rng(7)
    n_frames, width, height, near = 10, 320, 240, 0.1
    K = np.tile([[300.0, 0, 160], [0, 280, 120], [0, 0, 1]], (n_frames, 1, 1))
    for depth, side in [(5.0, 0.0), (0.2, 0.0), (-4.0, 0.0), (5.0, 40.0), (1.0, 1.5)]:
        cam = rng.normal(scale=0.8, size=(n_frames, 60, 3)) + [side, 0.0, depth]
        edges = rng.integers(0, 60, size=(90, 2))
        boxes, valid = tight_boxes(cam.astype(dtype), K, width, height, near, edges)
        for f in range(n_frames):
            ref = _reference_box(cam[f], K[f], width, height, near, edges)
            assert valid[f] == (ref is not None), (depth, side, f)
            np.testing.assert_allclose(boxes[f], ref if ref is not None else 0.0, atol=1e-6 if dtype == np.float64
                                       else 2e-3)
    boxes, valid = tight_boxes(np.zeros((3, 0, 3)), K[:3], width, height, near, np.zeros((0, 2), int))
    assert not valid.any() and not boxes.any()


class _Geometry:
    """What deforming_boxes reads of the export's sampling.Geometry."""

    def __init__(self, vertices, edges):
        self.vertices, self.edges, self.edge_reads = vertices, edges, 0

    def __getattribute__(self, name):
        if name == "edges":
            object.__setattr__(self, "edge_reads", object.__getattribute__(self, "edge_reads") + 1)
        return object.__getattribute__(self, name)


@pytest.mark.parametrize("chunk_bytes", [16 << 20, 3000])  # all frames at once; a few frames per chunk
def test_deforming_boxes_match_frame_by_frame(monkeypatch, chunk_bytes):
    """Fixed topology (one array), the same topology as per-frame lists, and a topology that changes midway (a Build
    modifier) all give the per-frame float64 tight_boxes; edges are read only where geometry reaches behind the near
    plane."""
    monkeypatch.setattr(geometry, "_CHUNK_BYTES", chunk_bytes)
    rng = np.random.default_rng(8)
    n_frames, width, height = 14, 320, 240
    K = np.tile([[300.0, 0, 160], [0, 280, 120], [0, 0, 1]], (n_frames, 1, 1))
    near = np.full(n_frames, 0.1)
    obj_to_cam = np.tile(np.eye(4), (n_frames, 1, 1))
    obj_to_cam[:, :3, :3] = _rotations(rng, n_frames)
    obj_to_cam[:, :3, 3] = [0.2, -0.1, 5.0]
    local = rng.normal(scale=(0.04, 0.04, 0.8), size=(n_frames, 50, 3)).astype(np.float32)  # a thin rod along z
    edges = rng.integers(0, 50, size=(80, 2))

    def per_frame(verts, frame_edges):
        out = [tight_boxes((v @ m[:3, :3].T + m[:3, 3])[None], K[f:f + 1], width, height, near[f], e)
               for f, (v, m, e) in enumerate(zip(verts, obj_to_cam, frame_edges, strict=True))]
        return np.concatenate([b for b, _ in out]), np.concatenate([ok for _, ok in out])

    changing = [v if f < 6 else v[:30] for f, v in enumerate(local)]  # 20 vertices and their edges gone at frame 6
    changing_edges = [edges if f < 6 else edges[(edges < 30).all(1)] for f in range(n_frames)]
    rewired = [edges if f < 6 else np.roll(edges, 1, axis=0) % 50 // 2 for f in range(n_frames)]  # same count
    more_edges = [edges if f < 6 else np.concatenate([edges, edges[:5, ::-1]]) for f in range(n_frames)]
    for straddle in (False, True):
        if straddle:  # the last frames reach behind the camera, the rod pointing at it: the box ends at near-plane cuts
            obj_to_cam[9:, :3, :3] = np.eye(3)
            obj_to_cam[9:, :3, 3] = [0.0, 0.0, 0.6]
        cases = [(local, edges, [edges] * n_frames), (list(local), [edges] * n_frames, [edges] * n_frames),
                 (changing, changing_edges, changing_edges), (list(local), rewired, rewired),
                 (list(local), more_edges, more_edges)]
        for vertices, geo_edges, ref_edges in cases:
            geo = _Geometry(vertices, geo_edges)
            boxes, valid = deforming_boxes(obj_to_cam, geo, K, width, height, near)
            ref_boxes, ref_valid = per_frame(vertices, ref_edges)
            np.testing.assert_array_equal(valid, ref_valid)
            np.testing.assert_allclose(boxes, ref_boxes, atol=2e-3)
            if vertices is local:
                assert (geo.edge_reads > 0) == straddle  # fixed topology: edges only for near-plane clipping
        assert valid.all()
        empty = _Geometry(np.zeros((n_frames, 0, 3), np.float32), np.zeros((0, 2), int))  # a mesh with no vertices
        boxes, valid = deforming_boxes(obj_to_cam, empty, K, width, height, near)
        assert not valid.any() and not boxes.any()
        if straddle:  # the clipping is what sets these boxes: other edges give other boxes
            assert np.abs(per_frame(local, rewired)[0][9:] - per_frame(local, [edges] * n_frames)[0][9:]).max() > 1.0


@pytest.mark.parametrize("fit", ["AUTO", "HORIZONTAL", "VERTICAL"])
@pytest.mark.parametrize("size", [(720, 480), (480, 720)])
def test_intrinsics_scalar_and_array_paths_agree(fit, size):
    """A fixed camera's K (plain floats) is bit-identical to the per-frame K of an animated one (arrays)."""
    from addon.export.camera import intrinsics

    lens, shift_x, shift_y = np.array([18.0, 35.0, 120.5]), np.array([0.0, 0.1, -0.25]), np.array([0.0, -0.05, 0.3])
    for aspect in [(1.0, 1.0), (2.0, 1.0), (1.0, 1.5)]:
        per_frame = intrinsics(lens, np.full(3, 36.0), np.full(3, 24.0), np.full(3, fit), shift_x, shift_y, *size, aspect)
        for f in range(3):
            fixed = intrinsics(float(lens[f]), 36.0, 24.0, fit, float(shift_x[f]), float(shift_y[f]), *size, aspect)
            np.testing.assert_array_equal(fixed, per_frame[f])
