"""The frame loop: what Blender evaluates at each exported frame, read as cheaply as possible.

One ``scene.frame_set`` per frame (the full depsgraph: parents, constraints, drivers, NLA, bones), then bulk reads:
every object's world matrix in one ``foreach_get``, the camera's settings (once, when nothing can change them:
:func:`_fixed_camera`), and the evaluated geometry of entities whose geometry can change. Rigid meshes
(:func:`is_rigid`) are read once: their world vertices are the per-frame world matrix times fixed local vertices,
which the export vectorises afterwards. Meshes whose modifiers only deform (:func:`keeps_topology`) keep their
topology, so only their evaluated positions are read per frame; anything else (Geometry Nodes, Build, curves...) is
read whole, vertices and edges, per frame. While a frame-change handler runs, no geometry is taken as fixed.
Everything here is in Blender units; the caller converts to metres.
"""

import functools
from dataclasses import dataclass, field

import bpy
import numpy as np

from .camera import check_perspective
from .errors import ExportCancelled, ExportError
from .geometry import VertexStack


@dataclass
class Geometry:
    """An entity's local-space geometry, Blender units.

    Rigid (``deforms`` False): ``vertices`` (V, 3) float32 (Blender's own precision) and ``edges`` (E, 2) int32, read
    from ``mesh`` on first use (only geometry reaching behind the camera needs them); ``bound_box`` None (the export
    takes the bounds from the vertices). Deforming: ``bound_box`` (F, 8, 3) float64 (Blender ``bound_box`` corner
    order) and either, when only positions move (see :func:`keeps_topology`), ``vertices`` (F, V, 3) float32 with the
    ``edges`` (E, 2) of ``mesh``, or per-frame lists of ``vertices`` (V_f, 3) float32 and ``edges`` (E_f, 2) int32.
    """

    vertices: object
    bound_box: np.ndarray | None
    deforms: bool
    mesh: object = None
    frame_edges: list = field(default_factory=list)

    @functools.cached_property
    def edges(self):
        return _mesh_edges(self.mesh) if self.mesh is not None else self.frame_edges

    def to_frame_lists(self, n_read):
        """Switch deforming geometry read into one (F, V, 3) buffer to per-frame lists, keeping the ``n_read`` frames
        already read (the evaluated vertex count changed although the modifiers only deform, e.g. set by a handler)."""
        edges = self.edges
        self.vertices, self.frame_edges, self.mesh = list(self.vertices[:n_read]), [edges] * n_read, None
        del self.edges  # the cached mesh edges; from now on the per-frame list


@dataclass
class Samples:
    """What the frame loop read, per exported frame (F frames, N entities), Blender units and Blender axes.

    camera_names: F camera object names; world (F, 1 + N, 4, 4) float64 matrix_world (scale included) of the camera
    (column 0, also ``camera_world``) and the entities (columns 1.., also ``entity_world``); lens, sensor_width,
    sensor_height, shift_x, shift_y, clip_start, clip_end: (F,) float64; sensor_fit: (F,) str; geometry: N Geometry;
    rigid: :class:`.geometry.VertexStack` of the rigid entities' vertices (in entity order); ray_visible (F, N) bool
    or None: the first surface on the ray from the camera to the entity origin belongs to the entity or lies beyond
    the origin;
    fixed_camera: for one camera whose settings cannot change over the frames (read once), its (lens, sensor_width,
    sensor_height, sensor_fit, shift_x, shift_y) as Python scalars, else None.
    """

    camera_names: list
    world: np.ndarray
    lens: np.ndarray
    sensor_width: np.ndarray
    sensor_height: np.ndarray
    sensor_fit: np.ndarray
    shift_x: np.ndarray
    shift_y: np.ndarray
    clip_start: np.ndarray
    clip_end: np.ndarray
    geometry: list
    rigid: VertexStack
    ray_visible: np.ndarray | None
    fixed_camera: tuple | None = None

    @property
    def camera_world(self):
        return self.world[:, 0]

    @property
    def entity_world(self):
        return self.world[:, 1:]


# Modifier types that only move vertices (Blender's "deform only" modifiers): the evaluated mesh keeps the vertices and
# edges of the mesh data. Anything else (Geometry Nodes, Subdivision, Build...) may change them from frame to frame.
_DEFORM_ONLY = frozenset({
    "ARMATURE", "CAST", "CORRECTIVE_SMOOTH", "CURVE", "DISPLACE", "HOOK", "LAPLACIANDEFORM", "LAPLACIANSMOOTH",
    "LATTICE", "MESH_DEFORM", "SHRINKWRAP", "SIMPLE_DEFORM", "SMOOTH", "SURFACE_DEFORM", "WARP", "WAVE",
})


def _frame_handlers():
    """True when a frame-change handler runs: a script could then swap or edit mesh data at any frame (stop-motion
    rigs do), so no geometry is taken as fixed."""
    return bool(bpy.app.handlers.frame_change_pre or bpy.app.handlers.frame_change_post)


def keeps_topology(obj):
    """True for a mesh object whose evaluated mesh has the vertices and edges of its mesh data at every frame, only
    moved (deform-only modifiers, shape keys, armatures, animated vertex coordinates) and no frame-change handler."""
    return obj.type == "MESH" and all(mod.type in _DEFORM_ONLY for mod in obj.modifiers) and not _frame_handlers()


def is_rigid(obj):
    """True when the object's evaluated geometry is its mesh data as is at every frame: no modifiers, no shape keys,
    no animated mesh data (keyed vertex coordinates, drivers) and no frame-change handler."""
    return (obj.type == "MESH" and not obj.modifiers and obj.data.shape_keys is None
            and obj.data.animation_data is None and not _frame_handlers())


# Mesh data are read from the generic attributes ``position`` and ``.edge_verts`` (4.0+ storage): ``foreach_get`` on
# those copies the buffers whole, while ``vertices``/``edges`` go item by item (10-40x slower on a 482-vertex sphere).
def _read_positions(mesh, out):
    """Fill ``out`` (V, 3) float32, C-contiguous, with the mesh's local vertex positions (Blender's own precision)."""
    if len(out):
        mesh.attributes.get("position").data.foreach_get("vector", out.reshape(-1))
    return out


def _vertex_stack(meshes):
    """:class:`.geometry.VertexStack` of the meshes' local vertices, read into one float32 buffer (no copies)."""
    counts = [len(mesh.vertices) for mesh in meshes]
    points = np.empty((sum(counts), 3), dtype=np.float32)
    start = 0
    for mesh, count in zip(meshes, counts, strict=True):
        _read_positions(mesh, points[start:start + count])
        start += count
    return VertexStack(points, counts)


def _mesh_edges(mesh):
    """(E, 2) int32 vertex indices of the edges (Blender's own type)."""
    edges = np.empty((len(mesh.edges), 2), dtype=np.int32)
    if len(edges):
        mesh.attributes.get(".edge_verts").data.foreach_get("value", edges.reshape(-1))
    return edges


def _read_evaluated(obj, depsgraph, geo, f):
    """Read frame ``f`` of deforming entity ``obj`` into ``geo`` (a :class:`Geometry`): its evaluated bound box, and
    its evaluated vertex positions (into the (F, V, 3) buffer when only positions move) or vertices and edges."""
    ob_eval = obj.evaluated_get(depsgraph)
    ob_eval.bound_box.foreach_get(geo.bound_box[f].reshape(-1))  # one bulk read (10x faster than corner by corner)
    if geo.mesh is not None:
        mesh = ob_eval.data  # an evaluated mesh object's data is its evaluated mesh: read in place, no copy
        if len(mesh.vertices) == geo.vertices.shape[1]:
            _read_positions(mesh, geo.vertices[f])
            return
        geo.to_frame_lists(f)
    verts, edges = _evaluated_mesh(ob_eval, geo.bound_box[f])
    geo.vertices.append(verts)
    geo.frame_edges.append(edges)


def _evaluated_mesh(ob_eval, bound_box):
    """(vertices, edges) of an evaluated object; objects without geometry give their ``bound_box`` corners."""
    if ob_eval.type == "MESH":  # read the evaluated mesh in place (to_mesh() would copy it)
        mesh = ob_eval.data
        return _read_positions(mesh, np.empty((len(mesh.vertices), 3), dtype=np.float32)), _mesh_edges(mesh)
    try:
        mesh = ob_eval.to_mesh()
    except RuntimeError:  # types that have no mesh form (empties, armatures, lights...)
        mesh = None
    if mesh is None:
        return bound_box.copy(), np.zeros((0, 2), dtype=np.int32)
    try:
        return _read_positions(mesh, np.empty((len(mesh.vertices), 3), dtype=np.float32)), _mesh_edges(mesh)
    finally:
        ob_eval.to_mesh_clear()


class _MatrixReader:
    """World matrices from one ``bpy.data.objects.foreach_get`` per frame (float32 is Blender's own precision, and
    an order of magnitude faster to fetch than float64). Blender stores matrices column-major."""

    def __init__(self, n_frames, budget_bytes=256 << 20):
        n = len(bpy.data.objects)
        # Keep every frame's buffer when it fits (no per-frame copies); else one buffer, copied out by ``keep``.
        self.frames = np.empty((n_frames if n_frames * n * 64 <= budget_bytes else 1, n * 16), dtype=np.float32)
        self.shared = len(self.frames) == 1
        self.n_frames = n_frames
        self.kept = None
        self._rows = None

    def row(self, obj):
        """The row of ``obj`` in ``bpy.data.objects`` (found by name, checked by pointer: linked objects can share
        a name; then every object's pointer is listed once)."""
        objects = bpy.data.objects
        i = objects.find(obj.name)
        if i >= 0 and objects[i] == obj:
            return i
        if self._rows is None:
            self._rows = {o.as_pointer(): k for k, o in enumerate(objects)}
        return self._rows[obj.as_pointer()]

    def buffers(self):
        """The flat (n_objects * 16,) float32 buffer of each frame, in frame order (the same one when shared); fill
        one with ``bpy.data.objects.foreach_get("matrix_world", buffer)``."""
        return [self.frames[0]] * self.n_frames if self.shared else list(self.frames)

    def keep(self, f, buffer, rows, cam_row):
        """With one shared buffer: store frame ``f``'s rows of the camera and the entities before the next read."""
        if self.kept is None:
            self.kept = np.empty((self.n_frames, len(rows) + 1, 16), dtype=np.float32)
        self.kept[f] = buffer.reshape(-1, 16)[[cam_row, *rows]]

    def result(self, rows, cam_rows):
        """(F, 1 + N, 4, 4) float64 row-major matrices after the loop: the camera of each frame (``cam_rows``: F rows,
        or one row for all frames), then the entities (``rows``)."""
        if self.kept is not None:
            return self.matrices(self.kept)
        per_frame = self.frames.reshape(len(self.frames), -1, 16)
        if isinstance(cam_rows, int):  # one camera: a single gather
            return self.matrices(per_frame[:, [cam_rows, *rows]])
        index = np.empty((len(per_frame), len(rows) + 1), dtype=np.intp)
        index[:, 0], index[:, 1:] = cam_rows, rows
        return self.matrices(per_frame[np.arange(len(per_frame))[:, None], index])

    @staticmethod
    def matrices(flat):
        """(..., 4, 4) float64 row-major matrices from column-major float32 (..., 16), C-contiguous (every later
        step on them is several times slower on a transposed view)."""
        out = np.empty((*flat.shape[:-1], 4, 4))
        out[...] = flat.reshape(out.shape).swapaxes(-1, -2)
        return out


def find_moving(scene, frames, candidates, tol=1e-6, is_cancelled=None):
    """The candidates whose world matrix or evaluated bounds change over ``frames`` (one frame_set per frame).

    Bounds catch geometry that moves without its object moving (armature skinning, animated modifiers).
    """
    reader = _MatrixReader(1)
    rows = [reader.row(obj) for obj in candidates]
    deforming = [i for i, obj in enumerate(candidates) if not is_rigid(obj)]
    first_m = first_b = None
    moving = np.zeros(len(candidates), dtype=bool)
    for frame in frames:
        if is_cancelled is not None and is_cancelled():
            raise ExportCancelled("Export cancelled.")
        scene.frame_set(int(frame))
        buffer = reader.frames[0]
        bpy.data.objects.foreach_get("matrix_world", buffer)
        mats = reader.matrices(buffer.reshape(-1, 16)[rows])
        bounds = np.array([candidates[i].bound_box for i in deforming], dtype=np.float64).reshape(-1, 8, 3)
        if first_m is None:
            first_m, first_b = mats, bounds
            continue
        moving |= np.abs(mats - first_m).max(axis=(1, 2)) > tol
        if deforming:
            moving[deforming] |= np.abs(bounds - first_b).max(axis=(1, 2)) > tol
    return [obj for obj, m in zip(candidates, moving, strict=True) if m]


def sample(scene, frames, entities, camera=None, ray_cast=False, progress=None, is_cancelled=None):
    """Run the frame loop over ``frames`` (Blender frame numbers) for ``entities`` (objects) and return Samples.

    camera: a camera object used at every frame, or None for ``scene.camera`` per frame (markers may switch it).
    ray_cast: also decide visibility by casting a ray from the camera to each entity origin (when renders are off).
    progress(done, total) is called after each frame; is_cancelled() -> True stops with ExportCancelled.
    Raises ExportError naming the frame when the scene has no camera there, or the camera when it is not perspective.
    """
    n_frames, n_ent = len(frames), len(entities)
    reader = _MatrixReader(n_frames)
    rows = [reader.row(obj) for obj in entities]
    meshes = [obj.data if is_rigid(obj) else None for obj in entities]
    stack = _vertex_stack([mesh for mesh in meshes if mesh is not None])
    rigid_sets = iter(stack.sets)
    geometry, deforming = [], []
    for obj, mesh in zip(entities, meshes, strict=True):
        if mesh is not None:
            geometry.append(Geometry(next(rigid_sets), None, False, mesh=mesh))
        else:
            bound_box = np.empty((n_frames, 8, 3), dtype=np.float32)
            if keeps_topology(obj):
                vertices = np.empty((n_frames, len(obj.data.vertices), 3), dtype=np.float32)
                geometry.append(Geometry(vertices, bound_box, True, mesh=obj.data))
            else:
                geometry.append(Geometry([], bound_box, True))
            deforming.append((obj, geometry[-1]))
    depsgraph = bpy.context.evaluated_depsgraph_get() if deforming or ray_cast else None
    ray_visible = np.ones((n_frames, n_ent), dtype=bool) if ray_cast else None
    # Per frame only cheap reads into lists and preallocated buffers; every conversion waits until after the loop.
    cam_ptrs, cam_values, fits = [], [], []
    cam_objs = {}  # camera pointer -> object, for cameras already checked
    fixed = _fixed_camera(scene, camera)  # its settings are read once, after the loop
    read = bpy.data.objects.foreach_get
    for f, (frame, buffer) in enumerate(zip(frames.tolist(), reader.buffers(), strict=True)):
        if is_cancelled is not None and is_cancelled():
            raise ExportCancelled("Export cancelled.")
        scene.frame_set(frame)
        read("matrix_world", buffer)
        cam = fixed
        if cam is None:  # cameras switch by markers, or the lens is animated: read them this frame
            cam = camera or scene.camera
            if cam is None:
                raise ExportError(
                    f"Scene '{scene.name}' has no camera at frame {frame}: add a camera (Add › Camera) and set it as "
                    "the scene camera (Scene Properties › Camera), or bind one to a marker before this frame."
                )
            ptr = cam.as_pointer()
            if ptr not in cam_objs:
                check_perspective(cam)
                cam_objs[ptr] = cam
            cam_ptrs.append(ptr)
            data = cam.data
            cam_values.append((data.lens, data.sensor_width, data.sensor_height, data.shift_x, data.shift_y,
                               data.clip_start, data.clip_end))
            fits.append(data.sensor_fit)
        if reader.shared:  # one buffer for all frames (huge files): copy this frame's rows out now
            reader.keep(f, buffer, rows, reader.row(cam))
        for obj, geo in deforming:
            _read_evaluated(obj, depsgraph, geo, f)
        if ray_cast:
            ray_visible[f] = _ray_visibility(scene, depsgraph, cam, entities)
        if progress is not None:
            progress(f + 1, n_frames)
    for _obj, geo in deforming:
        geo.bound_box = geo.bound_box.astype(np.float64)
    if fixed is not None:
        data = fixed.data
        settings = data.lens, data.sensor_width, data.sensor_height, data.sensor_fit, data.shift_x, data.shift_y
        lens, sensor_w, sensor_h, fit, shift_x, shift_y = settings
        values = np.array([(lens, sensor_w, sensor_h, shift_x, shift_y, data.clip_start, data.clip_end)])
        values = values.repeat(n_frames, axis=0)
        fits = np.array([fit]).repeat(n_frames)
        names, world = [fixed.name] * n_frames, reader.result(rows, reader.row(fixed))
    else:
        settings = None
        values = np.array(cam_values, dtype=np.float64).reshape(n_frames, 7)
        fits = np.array(fits)
        cam_rows = {ptr: reader.row(cam) for ptr, cam in cam_objs.items()}
        cam_names = {ptr: cam.name for ptr, cam in cam_objs.items()}
        names = [cam_names[ptr] for ptr in cam_ptrs]
        world = reader.result(rows, [cam_rows[ptr] for ptr in cam_ptrs])
    return Samples(
        camera_names=names, world=world,
        lens=values[:, 0], sensor_width=values[:, 1], sensor_height=values[:, 2], sensor_fit=fits,
        shift_x=values[:, 3], shift_y=values[:, 4], clip_start=values[:, 5], clip_end=values[:, 6],
        geometry=geometry, rigid=stack, ray_visible=ray_visible, fixed_camera=settings,
    )


def _fixed_camera(scene, camera):
    """The camera object when neither it nor its lens settings can change over the frames, else None.

    Only its matrix is animated then (read per frame with the others): no marker binds another camera, its camera
    data has no animation data (actions, NLA, drivers all live there) and no frame-change handler runs (a handler
    could set anything). Raises ExportError (via :func:`check_perspective`) for a fixed camera that is not
    perspective, as the loop would.
    """
    cam = camera or scene.camera
    if (cam is None or cam.type != "CAMERA" or cam.data.animation_data is not None or _frame_handlers()
            or (camera is None and any(marker.camera is not None for marker in scene.timeline_markers))):
        return None
    check_perspective(cam)
    return cam


def _ray_visibility(scene, depsgraph, cam, entities):
    """(N,) bool at the current frame: nothing other than the entity itself lies between the camera and its origin."""
    out = np.ones(len(entities), dtype=bool)
    origin = cam.matrix_world.translation
    for i, obj in enumerate(entities):
        delta = obj.matrix_world.translation - origin
        dist = delta.length
        if dist < 1e-9:
            continue
        hit, location, _n, _i, hit_obj, _m = scene.ray_cast(depsgraph, origin, delta / dist, distance=dist)
        if hit and hit_obj is not None and hit_obj.original != obj:
            # A hit on the origin itself (a surface through it) does not occlude.
            out[i] = (location - origin).length >= dist * (1 - 1e-6)
    return out
