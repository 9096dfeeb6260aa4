"""Render PoseTraj-10K-style clips in headless Blender; run only as a subprocess by :mod:`.data` (imports bpy).

    python blender_data.py --out DIR --first I --count N --width W --height H --frames T --seed S [--meshes DIR]

Per clip ``I``: an empty scene, the authors' camera (at (0, −4.7, 2.3), pitched 67°, spec §3.4), a textured ground,
a sun, and one entity — a procedural primitive or a mesh of ``--meshes`` (.obj/.ply/.stl, scaled to ~1 m) with a
random colour — that follows a line, an arc or a turn on the spot (linear keys), chosen from ``Random(seed + I)``.
Cycles at 8 samples. Each clip is exported with the add-on's exporter (tracks, 3D boxes, depth, masks, per-frame
renders) to ``DIR/clip_<I>.zip``; :mod:`.data` turns it into the training layout.
"""

import argparse
import math
import random
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[4]
sys.path.insert(0, str(ROOT))  # the add-on package, for its exporter

import bpy  # noqa: E402

import addon  # noqa: E402
from addon.export import ExportOptions, export_shot, props  # noqa: E402

PRIMITIVES = ("cube", "uv_sphere", "ico_sphere", "cylinder", "cone", "torus")
PATHS = ("line", "arc", "rotation")
MESH_SUFFIXES = {".obj": "obj_import", ".ply": "ply_import", ".stl": "stl_import"}  # bpy.ops.wm importers


def _material(name, rgb):
    mat = bpy.data.materials.new(name)
    mat.use_nodes = True
    mat.node_tree.nodes["Principled BSDF"].inputs["Base Color"].default_value = (*rgb, 1.0)
    return mat


def _scene(width, height, frames):
    scene = bpy.context.scene
    scene.render.engine = "CYCLES"
    scene.cycles.device, scene.cycles.samples = "CPU", 8
    scene.cycles.use_denoising = scene.cycles.use_adaptive_sampling = False
    scene.render.resolution_x, scene.render.resolution_y, scene.render.resolution_percentage = width, height, 100
    scene.render.fps = 6  # the fps SVD is conditioned on (spec §3.3)
    scene.frame_start, scene.frame_end = 1, frames
    cam = bpy.data.objects.new("Camera", bpy.data.cameras.new("Camera"))
    cam.location, cam.rotation_euler = (0.0, -4.7, 2.3), (math.radians(67.0), 0.0, 0.0)
    scene.collection.objects.link(cam)
    scene.camera = cam
    bpy.ops.mesh.primitive_plane_add(size=30.0)
    ground = bpy.context.active_object
    mat = bpy.data.materials.new("Ground")
    mat.use_nodes = True
    checker = mat.node_tree.nodes.new("ShaderNodeTexChecker")
    checker.inputs["Scale"].default_value = 40.0
    mat.node_tree.links.new(checker.outputs["Color"], mat.node_tree.nodes["Principled BSDF"].inputs["Base Color"])
    ground.data.materials.append(mat)
    sun = bpy.data.objects.new("Sun", bpy.data.lights.new("Sun", "SUN"))
    sun.data.energy, sun.rotation_euler = 3.0, (math.radians(35), math.radians(10), math.radians(30))
    scene.collection.objects.link(sun)
    scene.world = bpy.data.worlds.new("World")
    scene.world.color = (0.45, 0.5, 0.6)
    return scene


def _entity(rng, meshes):
    """One object of about 1 m, origin at its bounding-box centre, resting on the ground; returns (object, name)."""
    if meshes:
        path = rng.choice(meshes)
        getattr(bpy.ops.wm, MESH_SUFFIXES[path.suffix.lower()])(filepath=str(path))
        obj = bpy.context.selected_objects[0]
        bpy.ops.object.origin_set(type="ORIGIN_GEOMETRY", center="BOUNDS")
        obj.scale = (1.0 / max(obj.dimensions),) * 3
        name = path.stem
    else:
        name = rng.choice(PRIMITIVES)
        getattr(bpy.ops.mesh, f"primitive_{name}_add")()
        obj = bpy.context.active_object
        obj.scale = (0.5,) * 3
    bpy.context.view_layer.update()
    obj.name = name
    obj.data.materials.clear()
    obj.data.materials.append(_material(name, [rng.uniform(0.1, 0.9) for _ in range(3)]))
    for coll in list(obj.users_collection):
        coll.objects.unlink(obj)
    return obj, name


def _animate(obj, rng, frames):
    """Key ``obj`` along a line / arc / turn on the spot in view of the authors' camera; returns the path kind."""
    kind = rng.choice(PATHS)
    z = obj.dimensions.z / 2
    x0, y0 = rng.uniform(-0.8, 0.8), rng.uniform(-0.5, 0.8)
    heading = rng.uniform(0, 2 * math.pi)
    radius, sweep = rng.uniform(0.6, 1.0), rng.choice((-1, 1)) * rng.uniform(math.pi / 2, math.pi)
    turn = rng.choice((-1, 1)) * rng.uniform(math.pi / 2, 2 * math.pi)
    bpy.context.preferences.edit.keyframe_new_interpolation_type = "LINEAR"  # constant speed, as the authors' curves
    for i in range(frames):
        u = i / max(frames - 1, 1)
        if kind == "line":
            x, y, yaw = x0 + 1.2 * u * math.cos(heading), y0 + 1.2 * u * math.sin(heading), 0.0
        elif kind == "arc":
            x, y, yaw = radius * math.cos(sweep * u), radius * math.sin(sweep * u), sweep * u
        else:
            x, y, yaw = x0, y0, turn * u
        obj.location, obj.rotation_euler = (x, y, z), (0.0, 0.0, yaw)
        obj.keyframe_insert("location", frame=i + 1)
        obj.keyframe_insert("rotation_euler", frame=i + 1)
    return kind


def render_clip(out, index, args, meshes):
    rng = random.Random(args.seed * 1_000_003 + index)
    bpy.ops.wm.read_homefile(use_empty=True)
    scene = _scene(args.width, args.height, args.frames)
    obj, name = _entity(rng, meshes)
    coll = bpy.data.collections.new(props.ENTITY_COLLECTION)
    scene.collection.children.link(coll)
    coll.objects.link(obj)
    kind = _animate(obj, rng, args.frames)
    obj[props.PROMPT] = f"a {name.replace('_', ' ')}"
    scene[props.SCENE_PROMPT] = f"a {name.replace('_', ' ')} moves along a {kind} on a chequered floor"
    scene.frame_set(1)
    export_shot(out / f"clip_{index:05d}.zip", scene,
                ExportOptions(include_rgb_frames=True, blend_file=""))
    print(f"clip {index} {name} {kind}", flush=True)


def main(argv):
    parser = argparse.ArgumentParser()
    for name in ("first", "count", "width", "height", "frames", "seed"):
        parser.add_argument(f"--{name}", type=int, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--meshes", type=Path)
    args = parser.parse_args(argv)
    meshes = sorted(p for p in args.meshes.iterdir() if p.suffix.lower() in MESH_SUFFIXES) if args.meshes else []
    addon.register()
    try:
        for index in range(args.first, args.first + args.count):
            render_clip(args.out, index, args, meshes)
    finally:
        addon.unregister()  # a class left registered hangs bpy 4.5 at exit


if __name__ == "__main__":
    main(sys.argv[1:])
