"""Scene → shot bundle: checks the scene, runs the frame loop and renders, builds shot.json + arrays, writes the zip.

Arrays follow the DESIGN bundle table exactly. All lengths are metres = Blender units × ``unit_scale``.
Errors (:class:`ExportError`, message naming the object or setting and the fix) stop the export before anything is
written; warnings (unsaved file, non-uniform scale, an entity never in view, engine fallback) are returned.
"""

import functools
import tempfile
import tomllib
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import bpy
import numpy as np

from . import props
from .camera import camera_arrays, check_perspective, render_size, rigid, w2c_opencv
from .entities import auto_candidates, entity_meta, explicit_entities, marked_entities
from .errors import ExportCancelled, ExportError
from .geometry import deforming_boxes, project, quaternions_wxyz, rigid_boxes, transform
from .renders import render_beauty, render_data_passes
from .sampling import find_moving, sample

MAX_FRAMES = 999
MAX_MASK_ENTITIES = 255  # instance_mask is uint8, 0 = background
FORMAT_VERSION = "1.0"
CONVENTIONS = {
    "world": "Blender world, right-handed, Z up, metres (Blender units x unit_scale)",
    "camera_c2w_blender": "camera-to-world, Blender camera axes: x right, y up, looking down -z",
    "camera_w2c_opencv": "world-to-camera, OpenCV axes: x right, y down, z forward; diag(1,-1,-1,1) inv(c2w)",
    "intrinsics": "pixels at the output resolution; principal point in pixel-corner coordinates",
    "pixels": "x right, y down, origin at the top-left image corner, pixel centres at +0.5",
    "depth": "planar camera z in metres, inf for background",
    "instance_mask": "entity id per pixel, 0 background",
    "entities": "ids start at 1; column k of the N axis is entity id k+1",
    "quaternion": "w, x, y, z; world rotation with scale removed; sign continuous over frames",
}


@dataclass
class ExportOptions:
    """What to export. frame_range: (start, end, step) inclusive Blender frames, None for the scene's range;
    camera: a camera object name used for every frame, "" for the scene camera (markers may switch it);
    blend_file: the .blend path recorded in the bundle ("" for an unsaved file), None for the open file (an export
    of a saved copy names the artist's file, not the copy)."""

    include_renders: bool = True
    include_rgb_frames: bool = False
    frame_range: tuple | None = None
    camera: str = ""
    blend_file: str | None = None

    def blend_path(self):
        """Absolute path of the shot's .blend, "" when it is unsaved."""
        if self.blend_file is not None:
            return self.blend_file
        return bpy.path.abspath(bpy.data.filepath) if bpy.data.filepath else ""


@dataclass
class ExportResult:
    path: Path
    frame_count: int
    entity_names: list
    warnings: list = field(default_factory=list)


@functools.cache
def addon_version():
    """The extension's version from blender_manifest.toml at the extension root."""
    with open(Path(__file__).resolve().parents[2] / "blender_manifest.toml", "rb") as fh:
        return tomllib.load(fh)["version"]


class _Progress:
    """Maps per-stage progress onto one ``progress(done, total, stage)`` over the whole export."""

    def __init__(self, callback, total):
        self.callback, self.total, self.done = callback, total, 0

    def stage(self, name, count):
        start = self.done
        self.done += count

        def report(i, _n):
            if self.callback is not None:
                self.callback(start + i, self.total, name)

        report(0, count)
        return report


def _frames(scene, options):
    start, end, step = options.frame_range or (scene.frame_start, scene.frame_end, scene.frame_step)
    if step < 1:
        raise ExportError(f"Frame step is {step}; set Output Properties › Frame Range › Step to 1 or more.")
    frames = np.arange(start, end + 1, step, dtype=np.int32)
    if len(frames) < 2:
        raise ExportError(
            f"Frame range {start}..{end} (step {step}) gives {len(frames)} frame(s); a shot needs at least 2: "
            "widen Output Properties › Frame Range or lower the step."
        )
    if len(frames) > MAX_FRAMES:
        raise ExportError(
            f"Frame range {start}..{end} (step {step}) gives {len(frames)} frames; export at most {MAX_FRAMES}: "
            "shorten the range or raise the frame step (video models use 14-49 frames)."
        )
    return frames


def _check_scene(scene, options, warnings):
    """Up-front checks; returns the fixed camera object or None (scene camera per frame)."""
    for lib in (lib for lib in bpy.data.libraries if lib.is_missing):
        users = sorted(o.name for o in scene.objects if lib in (o.library, getattr(o.data, "library", None)))
        fix = "relocate it (Outliner › Blender File › right-click the library › Relocate) or make the data local"
        if users:
            raise ExportError(f"Linked library '{lib.filepath}' is missing and objects {', '.join(users)} come from "
                              f"it, so their geometry is unknown: {fix}.")
        warnings.append(f"Linked library '{lib.filepath}' is missing (no object of the scene comes from it; "
                        f"materials or node groups from it render as missing): {fix}.")
    width, height = render_size(scene.render)
    if width < 1 or height < 1:
        raise ExportError(
            f"Output resolution is {width}x{height} px ({scene.render.resolution_x}x{scene.render.resolution_y} at "
            f"{scene.render.resolution_percentage} %); set Output Properties › Format › Resolution so both are >= 1 px."
        )
    if not options.blend_path():
        warnings.append("The .blend file is not saved: the bundle records no blend_file path. Save it to keep the link.")
    if options.camera:
        cam = scene.objects.get(options.camera)
        if cam is None:
            raise ExportError(f"Camera '{options.camera}' is not an object of scene '{scene.name}': pick one of its "
                              "cameras or leave the camera empty to use the scene camera.")
        check_perspective(cam)
        return cam
    cameras = {m.camera for m in scene.timeline_markers if m.camera is not None}
    if scene.camera is not None:
        cameras.add(scene.camera)
    if not cameras:
        raise ExportError(
            f"Scene '{scene.name}' has no camera: add one (Add › Camera) and set it as the scene camera "
            "(Scene Properties › Camera), or pick a camera for the export."
        )
    for cam in sorted(cameras, key=lambda o: o.name):
        check_perspective(cam)
    return None


def _entities(scene, frames, is_cancelled, report):
    entities = explicit_entities(scene)
    if entities is None:
        marked = marked_entities(scene)
        candidates = [o for o in auto_candidates(scene) if o not in marked]
        moving = find_moving(scene, frames, candidates, is_cancelled=is_cancelled)
        report(len(frames), len(frames))
        entities = sorted(set(moving) | set(marked), key=lambda o: o.name)
    if not entities:
        raise ExportError(
            f"Scene '{scene.name}' has no entities: put the objects to export in a collection named "
            f"'{props.ENTITY_COLLECTION}', animate them, or set the custom property '{props.MARKED_ENTITY}' on them."
        )
    return entities


def _boxes(samples, w2c_bu, K, width, height, unit_scale):
    """box_2d (F, N, 4), box_2d_valid (F, N) and box_3d_world (F, N, 8, 3) metres from the sampled geometry."""
    n_frames, n_ent = samples.entity_world.shape[:2]
    rigid = [j for j, geo in enumerate(samples.geometry) if not geo.deforms]
    geos = [samples.geometry[j] for j in rigid]
    stack = samples.rigid

    def edges_of(k):
        return geos[k].edges

    if len(rigid) == n_ent:  # the common case: every entity rigid, no scatter into the full arrays
        obj_to_cam = w2c_bu[:, None] @ samples.entity_world  # (F, N, 4, 4) object to OpenCV camera, Blender units
        box_2d, valid = rigid_boxes(obj_to_cam, stack, edges_of, K, width, height, samples.clip_start)
        box_3d = _corners_world(samples.entity_world, stack.bound_boxes)
        return box_2d, valid, box_3d * unit_scale if unit_scale != 1.0 else box_3d
    box_2d = np.zeros((n_frames, n_ent, 4))
    valid = np.zeros((n_frames, n_ent), dtype=bool)
    box_3d = np.zeros((n_frames, n_ent, 8, 3))
    if rigid:
        obj_to_cam = w2c_bu[:, None] @ samples.entity_world[:, rigid]
        box_2d[:, rigid], valid[:, rigid] = rigid_boxes(obj_to_cam, stack, edges_of, K, width, height,
                                                        samples.clip_start)
        box_3d[:, rigid] = _corners_world(samples.entity_world[:, rigid], stack.bound_boxes) * unit_scale
    for j, geo in enumerate(samples.geometry):
        if not geo.deforms:
            continue
        world = samples.entity_world[:, j]
        box_3d[:, j] = transform(world, geo.bound_box) * unit_scale
        box_2d[:, j], valid[:, j] = deforming_boxes(w2c_bu @ world, geo, K, width, height, samples.clip_start)
    return box_2d, valid, box_3d


def _corners_world(world, corners):
    """(F, R, 8, 3) world corners from (F, R, 4, 4) matrices and (R, 4, 8) homogeneous local corners: one batched
    product of (R, 3F, 4) by (R, 4, 8), which BLAS runs per entity (a (F, R) batch of tiny products costs several times
    more)."""
    n_frames, n_ent = world.shape[:2]
    rows = world[..., :3, :].transpose(1, 0, 2, 3).reshape(n_ent, 3 * n_frames, 4)
    return (rows @ corners).reshape(n_ent, n_frames, 3, 8).transpose(1, 0, 3, 2)


def _visible(in_frame, track_2d, track_depth, depth, mask):
    """(F, N) bool from the renders: the pixel under the projected origin shows the entity itself, or a surface no
    nearer than the origin (origins outside their own geometry, e.g. a torus centre)."""
    n_frames, n_ent = in_frame.shape
    height, width = mask.shape[1:]
    # In-frame tracks are >= 0, so truncation is floor; the others are set to pixel 0 (their answer is discarded),
    # which also keeps far-off projections (up to 1e15 px next to the camera plane) out of the integer cast.
    pixel = np.where(in_frame[..., None], track_2d, 0.0).astype(np.intp)  # (F, N, 2)
    flat = pixel @ np.array([1, width]) + np.arange(0, n_frames * height * width, height * width)[:, None]
    own = mask.reshape(-1)[flat] == np.arange(1, n_ent + 1, dtype=np.uint8)
    behind = depth.reshape(-1)[flat] >= track_depth * (1 - 1e-3)
    return in_frame & (own | behind)


def build_shot(scene, options=None, progress=None, is_cancelled=None):
    """Everything a bundle holds, in memory: ``(meta, arrays, frames, warnings)``.

    meta: the shot.json dict; arrays: {name: array} of the DESIGN table (depth and instance_mask only with renders);
    frames: {"first_frame.png" | "rgb/%04d.png": PNG bytes}; warnings: list of str.
    progress(done, total, stage) is called as work proceeds; is_cancelled() -> True stops with ExportCancelled.
    The scene's current frame and every render setting are restored whatever happens.
    Raises ExportError (message names the object or setting and the fix).
    """
    options = options or ExportOptions()
    warnings = []
    camera = _check_scene(scene, options, warnings)
    frames = _frames(scene, options)
    n_frames = len(frames)
    renders = options.include_renders
    explicit = explicit_entities(scene) is not None
    rgb = options.include_rgb_frames
    total = n_frames * (1 + (not explicit) + renders + rgb) + renders + 1  # the last step is writing the zip
    tracker = _Progress(progress, total)
    view_layer = bpy.context.view_layer
    saved_frame = scene.frame_current, scene.frame_subframe
    try:
        entities = _entities(scene, frames, is_cancelled, tracker.stage("entities", 0 if explicit else n_frames))
        if renders and len(entities) > MAX_MASK_ENTITIES:
            raise ExportError(
                f"The shot has {len(entities)} entities; instance_mask stores entity ids as uint8, so an export with "
                f"renders holds at most {MAX_MASK_ENTITIES}: keep fewer objects in the '{props.ENTITY_COLLECTION}' "
                "collection, or export without renders."
            )
        metas = [entity_meta(obj, i + 1) for i, obj in enumerate(entities)]
        samples = sample(scene, frames, entities, camera, ray_cast=not renders,
                         progress=tracker.stage("frames", n_frames), is_cancelled=is_cancelled)
        rendered, frame_files, engine = None, {}, ""
        shots = [(frames[0], "first_frame.png")] if renders else []
        shots += [(frame, f"rgb/{i + 1:04d}.png") for i, frame in enumerate(frames)] if rgb else []
        cameras = [scene.objects[name] for name in dict.fromkeys(samples.camera_names)]
        unit_scale = scene.unit_settings.scale_length
        with tempfile.TemporaryDirectory(prefix="trajplate-export-") if shots else nullcontext() as tmp:
            if renders:
                rendered = render_data_passes(scene, view_layer, frames, entities, cameras, camera, tmp, unit_scale,
                                              tracker.stage("depth and masks", n_frames), is_cancelled)
            if shots:
                frame_files, engine = render_beauty(scene, view_layer, shots, cameras, camera, tmp, warnings,
                                                    tracker.stage("beauty", len(shots)), is_cancelled)
    finally:
        scene.frame_set(saved_frame[0], subframe=saved_frame[1])
    arrays = _arrays(scene, frames, samples, rendered, warnings, metas)
    meta = _meta(scene, frames, samples, metas, frame_files, renders, engine, options.blend_path())
    tracker.stage("writing", 1)
    return meta, arrays, frame_files, warnings


def _arrays(scene, frames, samples, rendered, warnings, metas):
    unit_scale = scene.unit_settings.scale_length
    render = scene.render
    width, height = render_size(render)
    fps = render.fps / render.fps_base
    # One vectorised polar decomposition for the camera and every entity, (F, 1 + N, 4, 4), in Blender units;
    # rigid() keeps translations as they are, so scaling them afterwards gives the same numbers as before.
    poses, axis_length = rigid(samples.world, return_scale=True)
    c2w, w2c, K = camera_arrays(poses[:, 0], samples, render, unit_scale)
    w2c_bu = w2c if unit_scale == 1.0 else w2c_opencv(poses[:, 0])  # the boxes' camera, in Blender units
    pose, world = poses[:, 1:], samples.entity_world
    if unit_scale != 1.0:
        pose[..., :3, 3] *= unit_scale
        world = world.copy()  # the samples stay in Blender units for the boxes
        world[..., :3, 3] *= unit_scale
    cam_pose = w2c[:, None] @ pose
    origin = cam_pose[..., :3, 3]
    track_2d = project(K, origin)
    track_depth = origin[..., 2]
    inside = (track_2d >= 0.0) & (track_2d < np.array([width, height], dtype=np.float64))
    in_frame = np.logical_and.reduce(inside, axis=-1) & (track_depth > 0)
    box_2d, box_valid, box_3d = _boxes(samples, w2c_bu, K, width, height, unit_scale)
    arrays = {
        "frame_numbers": frames.astype(np.int32),
        "time_s": (frames - frames[0]) / fps,
        "camera_c2w_blender": c2w,
        "camera_w2c_opencv": w2c,
        "intrinsics": K,
        "entity_world": world,
        "entity_position": world[..., :3, 3].copy(),
        "entity_quaternion_wxyz": quaternions_wxyz(pose[..., :3, :3]),
        "entity_cam_opencv": cam_pose,
        "track_2d": track_2d,
        "track_depth": track_depth,
        "track_in_frame": in_frame,
        "box_2d": box_2d,
        "box_2d_valid": box_valid,
        "box_3d_world": box_3d,
    }
    if rendered is None:
        arrays["track_visible"] = in_frame & samples.ray_visible
    else:
        depth, mask = rendered
        arrays["track_visible"] = _visible(in_frame, track_2d, track_depth, depth, mask)
        arrays["depth"] = depth
        arrays["instance_mask"] = mask
    axis_length = axis_length[:, 1:]  # (F, N, 3) the entities' scale along their own axes
    uneven = np.maximum.reduce(axis_length, axis=-1) > np.minimum.reduce(axis_length, axis=-1) * (1 + 1e-4)
    uneven = np.logical_or.reduce(uneven, axis=0)
    never = ~np.logical_or.reduce(box_valid | in_frame, axis=0)
    for meta, geo in zip(metas, samples.geometry, strict=True):
        if not any(len(v) for v in (geo.vertices if geo.deforms else [geo.vertices])):
            warnings.append(f"Entity '{meta['name']}' has no geometry (an empty mesh, or nothing to show): it gets no "
                            "2D box and no mask; give it a proxy mesh so that box and mask pipelines can see it.")
    for meta, is_uneven, is_never in zip(metas, uneven, never, strict=True):
        if is_uneven:
            warnings.append(f"Entity '{meta['name']}' has non-uniform scale: entity_quaternion_wxyz and "
                            "entity_cam_opencv keep only its rotation (entity_world keeps the scale).")
        if is_never:
            warnings.append(f"Entity '{meta['name']}' never enters the camera view over the exported frames.")
    return arrays


def _meta(scene, frames, samples, metas, frame_files, renders, engine, blend_file):
    render = scene.render
    width, height = render_size(render)
    unit_scale = scene.unit_settings.scale_length
    return {
        "format_version": FORMAT_VERSION,
        "generator": {"name": "TrajPlate", "addon_version": addon_version(), "blender_version": bpy.app.version_string},
        "scene": scene.name,
        "camera": samples.camera_names[0],
        "cameras": list(samples.camera_names),
        "blend_file": blend_file,
        "fps": render.fps / render.fps_base,
        "frame_start": int(frames[0]),
        "frame_end": int(frames[-1]),
        "frame_step": int(frames[1] - frames[0]),
        "frame_count": len(frames),
        "resolution": [width, height],
        "pixel_aspect": [render.pixel_aspect_x, render.pixel_aspect_y],
        "camera_settings": {
            "type": "PERSP",
            "lens_mm": float(samples.lens[0]),
            "sensor_width_mm": float(samples.sensor_width[0]),
            "sensor_height_mm": float(samples.sensor_height[0]),
            "sensor_fit": str(samples.sensor_fit[0]),
            "shift_x": float(samples.shift_x[0]),
            "shift_y": float(samples.shift_y[0]),
            "clip_start": float(samples.clip_start[0]) * unit_scale,
            "clip_end": float(samples.clip_end[0]) * unit_scale,
        },
        "unit_scale": unit_scale,
        "entities": metas,
        "scene_prompt": str(scene.get(props.SCENE_PROMPT, "")),
        "location_prompt": str(scene.get(props.LOCATION_PROMPT, "")),
        "conventions": dict(CONVENTIONS),
        "frames": list(frame_files),
        "renders": {"depth": renders, "instance_mask": renders, "engine": engine},
    }


def export_shot(filepath, scene=None, options=None, progress=None, is_cancelled=None):
    """Export ``scene`` (default: the context scene) as a shot bundle zip at ``filepath``.

    Returns ExportResult (path, frame count, entity names, warnings). The bundle is written atomically at the end;
    an error or a cancel leaves no file. Raises ExportError / ExportCancelled.
    """
    from ..bundle import BundleWriteError, write_bundle

    scene = scene or bpy.context.scene
    totals = []

    def relay(done, total, stage):
        totals.append(total)
        if progress is not None:
            progress(done, total, stage)

    meta, arrays, frame_files, warnings = build_shot(scene, options, relay, is_cancelled)
    if is_cancelled is not None and is_cancelled():
        raise ExportCancelled("Export cancelled.")
    try:
        path = write_bundle(filepath, meta, arrays, frame_files)
    except (BundleWriteError, OSError) as exc:
        raise ExportError(f"Could not write the bundle to '{filepath}': {exc}") from exc
    relay(totals[-1], totals[-1], "done")
    return ExportResult(Path(path), len(arrays["frame_numbers"]), [m["name"] for m in meta["entities"]], warnings)
