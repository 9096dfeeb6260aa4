"""Procedural benchmark shots for the adherence score, built in headless Blender (run in a subprocess).

    python bench/adherence/scenes.py build NAME OUT.zip [--width W --height H --frames F]
    python bench/adherence/scenes.py render SCENE.blend OUT_DIR [--camera-yaw DEG] [--entity-offset M]

``build`` writes OUT.blend and, through the add-on's exporter, the bundle OUT.zip with every frame's render
(the oracle) in ``frames/rgb/``. The shot: a ground and a backdrop with a trackable procedural texture (emission shaders, so a
few Cycles samples give a noise-free image), textured box entities in the ``TrajPlate`` collection, and a
camera move. ``render`` renders every frame to ``OUT_DIR/%04d.png``, optionally perturbed the way a take
that misses the control would be: the camera yawed by up to ``--camera-yaw`` degrees, or the entity
"Crate" (in every shot) shifted by up to ``--entity-offset`` metres along world X — both ramped linearly from 0 at the first frame
(where an image-to-video take starts exactly on the render) to the full value at the last.

Shots (camera / entities): ``static_linear`` (static / linear + turn in place), ``dolly_arc`` (dolly in / arc),
``pan_crossing`` (pan / two crossing), ``orbit_turn`` (orbit / turn in place + linear); degenerate ones:
``textureless`` (plain grey ground and backdrop, dolly), ``leaves_frame`` (static / an entity exits the frame).
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import bpy
from mathutils import Vector

# The add-on's property names (entity collection, prompts); the repository root is the extension root.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from addon.export import props  # noqa: E402

SHOTS = ("static_linear", "dolly_arc", "pan_crossing", "orbit_turn", "textureless", "leaves_frame")


def _emission(name: str, scale: float, hue: tuple[float, float, float] | None, textured: bool = True):
    """An emission material: noise texture (object coordinates, so it sticks to the object) times a tint."""
    mat = bpy.data.materials.new(name)
    mat.use_nodes = True
    nodes, links = mat.node_tree.nodes, mat.node_tree.links
    nodes.clear()
    out = nodes.new("ShaderNodeOutputMaterial")
    emit = nodes.new("ShaderNodeEmission")
    links.new(emit.outputs["Emission"], out.inputs["Surface"])
    tint = (*(hue or (0.8, 0.8, 0.8)), 1.0)
    if not textured:
        emit.inputs["Color"].default_value = tint
        return mat
    coords = nodes.new("ShaderNodeTexCoord")
    noise = nodes.new("ShaderNodeTexNoise")
    noise.inputs["Scale"].default_value = scale
    noise.inputs["Detail"].default_value = 8.0
    noise.inputs["Roughness"].default_value = 0.65
    ramp = nodes.new("ShaderNodeValToRGB")  # stretch the noise's contrast: corners for the tracker
    ramp.color_ramp.elements[0].position, ramp.color_ramp.elements[1].position = 0.35, 0.65
    mix = nodes.new("ShaderNodeMix")
    mix.data_type, mix.blend_type = "RGBA", "MULTIPLY"
    mix.inputs["Factor"].default_value = 1.0
    mix.inputs["B"].default_value = tint
    links.new(coords.outputs["Object"], noise.inputs["Vector"])
    links.new(noise.outputs["Fac"], ramp.inputs["Fac"])
    links.new(ramp.outputs["Color"], mix.inputs["A"])
    links.new(mix.outputs["Result"], emit.inputs["Color"])
    return mat


def _key(obj, attr: str, keys: list[tuple[int, tuple]]) -> None:
    """Keyframe ``obj.<attr>`` at (frame, value) pairs with linear interpolation (constant speed)."""
    for frame, value in keys:
        setattr(obj, attr, value)
        obj.keyframe_insert(attr, frame=frame)
    for fc in obj.animation_data.action.fcurves:
        for kp in fc.keyframe_points:
            kp.interpolation = "LINEAR"


def _look(location, target) -> tuple[float, float, float]:
    return tuple((Vector(target) - Vector(location)).to_track_quat("-Z", "Y").to_euler())


def _plane(name: str, size: float, location, rotation, mat):
    bpy.ops.mesh.primitive_plane_add(size=size, location=location, rotation=rotation)
    obj = bpy.context.active_object
    obj.name = name
    obj.data.materials.append(mat)
    return obj


def _box(coll, name: str, size: float, location, color, prompt: str):
    bpy.ops.mesh.primitive_cube_add(size=size, location=location)
    obj = bpy.context.active_object
    obj.name = name
    for c in list(obj.users_collection):
        c.objects.unlink(obj)
    coll.objects.link(obj)
    obj.data.materials.append(_emission(f"{name}Mat", 6.0, color))
    obj[props.PROMPT] = prompt
    return obj


def build(name: str, width: int, height: int, frames: int) -> None:
    """Build shot ``name`` (one of :data:`SHOTS`) in the current, empty file: frames 1..``frames``, 24 fps."""
    bpy.ops.wm.read_homefile(use_empty=True)
    scene = bpy.context.scene
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = 4
    scene.cycles.use_denoising = False
    scene.cycles.use_adaptive_sampling = False
    scene.cycles.max_bounces = 0
    scene.cycles.seed = 0
    scene.render.resolution_x, scene.render.resolution_y, scene.render.resolution_percentage = width, height, 100
    scene.render.fps, scene.render.fps_base = 24, 1.0
    scene.frame_start, scene.frame_end = 1, frames
    scene.render.image_settings.file_format = "PNG"
    scene.view_settings.view_transform = "Standard"  # emission colours land in the PNG as authored
    world = bpy.data.worlds.new("World")
    world.color = (0.55, 0.65, 0.8)
    scene.world = world
    scene[props.SCENE_PROMPT] = f"adherence benchmark shot {name}"
    scene[props.LOCATION_PROMPT] = "a textured studio floor and wall"

    textured = name != "textureless"
    _plane("Ground", 60.0, (0, 0, 0), (0, 0, 0), _emission("GroundMat", 1.2, (0.9, 0.85, 0.7), textured))
    _plane("Backdrop", 60.0, (0, 12, 0), (math.radians(90), 0, 0), _emission("BackdropMat", 1.0, (0.7, 0.8, 0.9), textured))

    cam = bpy.data.objects.new("Camera", bpy.data.cameras.new("Camera"))
    cam.data.lens = 30.0
    scene.collection.objects.link(cam)
    scene.camera = cam
    coll = bpy.data.collections.new(props.ENTITY_COLLECTION)
    scene.collection.children.link(coll)
    last = frames
    target = (0.0, 2.0, 0.8)

    def cam_at(*keys):
        _key(cam, "location", [(f, loc) for f, loc, _ in keys])
        _key(cam, "rotation_euler", [(f, _look(loc, tgt)) for f, loc, tgt in keys])

    if name in ("static_linear", "leaves_frame"):
        cam_at((1, (0, -6.5, 2.6), target))
    elif name in ("dolly_arc", "textureless"):
        cam_at((1, (0, -7.5, 2.8), target), (last, (0, -5, 2.3), target))
    elif name == "pan_crossing":
        cam_at((1, (0, -6.5, 2.6), (-1.5, 2, 0.8)), (last, (0, -6.5, 2.6), (1.5, 2, 0.8)))
    elif name == "orbit_turn":
        keys = []
        for i, f in enumerate((1, (1 + last) // 2, last)):
            a = math.radians(-12 + 12 * i)
            keys.append((f, (8.5 * math.sin(a), 2 - 8.5 * math.cos(a), 3.0), target))
        cam_at(*keys)
    else:
        raise SystemExit(f"unknown shot {name!r}; valid: {', '.join(SHOTS)}")

    if name == "static_linear":
        a = _box(coll, "Crate", 1.4, (-2, 1, 0.7), (1.0, 0.45, 0.3), "a wooden crate")
        _key(a, "location", [(1, (-2.2, 1, 0.7)), (last, (1.2, 0.5, 0.7))])
        b = _box(coll, "Block", 1.4, (2, 3, 0.7), (0.4, 0.9, 0.5), "a green block")
        _key(b, "rotation_euler", [(1, (0, 0, 0)), (last, (0, 0, math.radians(60)))])
    elif name in ("dolly_arc", "textureless"):
        a = _box(coll, "Crate", 1.4, (0, 2, 0.7), (1.0, 0.45, 0.3), "a wooden crate")
        arc = [(1 + round(i * (last - 1) / 4), (2.2 * math.cos(math.pi * i / 4), 2 - 2.2 * math.sin(math.pi * i / 4) + 1, 0.7))
               for i in range(5)]
        _key(a, "location", arc)
        _key(a, "rotation_euler", [(f, (0, 0, math.pi * i / 8)) for i, (f, _) in enumerate(arc)])
    elif name == "pan_crossing":
        a = _box(coll, "Crate", 1.4, (-2, 1, 0.7), (1.0, 0.45, 0.3), "a wooden crate")
        _key(a, "location", [(1, (-2.5, 1.0, 0.7)), (last, (2.0, 1.5, 0.7))])
        b = _box(coll, "Block", 1.2, (2, 3, 0.6), (0.4, 0.9, 0.5), "a green block")
        _key(b, "location", [(1, (2.5, 3.5, 0.6)), (last, (-2.0, 3.0, 0.6))])
    elif name == "orbit_turn":
        a = _box(coll, "Crate", 1.6, (0, 2, 0.8), (1.0, 0.45, 0.3), "a wooden crate")
        _key(a, "rotation_euler", [(1, (0, 0, 0)), (last, (0, 0, math.radians(45)))])
        b = _box(coll, "Block", 1.2, (2, 3, 0.6), (0.4, 0.9, 0.5), "a green block")
        _key(b, "location", [(1, (-2.5, 3.5, 0.6)), (last, (-0.5, 4.5, 0.6))])
    elif name == "leaves_frame":
        a = _box(coll, "Crate", 1.4, (0, 1, 0.7), (1.0, 0.45, 0.3), "a wooden crate")
        _key(a, "location", [(1, (0.0, 1.0, 0.7)), (last, (9.0, 1.0, 0.7))])
    scene.frame_set(1)


def render(out_dir: Path, camera_yaw_deg: float, entity_offset_m: float) -> None:
    """Render every frame of the open file to ``out_dir/%04d.png``, with the ramped perturbations applied."""
    scene = bpy.context.scene
    first, last = scene.frame_start, scene.frame_end
    if camera_yaw_deg:
        # Delta rotation is applied in the parent (world) frame: a yaw about world Z on top of the authored aim.
        _key(scene.camera, "delta_rotation_euler", [(first, (0, 0, 0)), (last, (0, 0, math.radians(camera_yaw_deg)))])
    if entity_offset_m:
        _key(bpy.data.objects["Crate"], "delta_location", [(first, (0, 0, 0)), (last, (entity_offset_m, 0, 0))])
    out_dir.mkdir(parents=True, exist_ok=True)
    scene.render.filepath = str(out_dir) + "/"
    for f in range(first, last + 1):
        scene.frame_set(f)
        scene.render.filepath = str(out_dir / f"{f:04d}.png")
        bpy.ops.render.render(write_still=True)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build")
    b.add_argument("name", choices=SHOTS)
    b.add_argument("out", type=Path)
    b.add_argument("--width", type=int, default=720)
    b.add_argument("--height", type=int, default=480)
    b.add_argument("--frames", type=int, default=49)
    r = sub.add_parser("render")
    r.add_argument("blend", type=Path)
    r.add_argument("out_dir", type=Path)
    r.add_argument("--camera-yaw", type=float, default=0.0)
    r.add_argument("--entity-offset", type=float, default=0.0)
    args = parser.parse_args(argv)
    if args.cmd == "build":
        import addon
        from addon.export import ExportOptions, export_shot

        build(args.name, args.width, args.height, args.frames)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        bpy.ops.wm.save_as_mainfile(filepath=str(args.out.resolve().with_suffix(".blend")))
        addon.register()
        try:
            export_shot(args.out.resolve(), bpy.context.scene, ExportOptions(include_rgb_frames=True))
        finally:
            addon.unregister()  # a class left registered hangs bpy 4.5 at exit
    else:
        bpy.ops.wm.open_mainfile(filepath=str(args.blend.resolve()))
        render(args.out_dir.resolve(), args.camera_yaw, args.entity_offset)


if __name__ == "__main__":
    main(sys.argv[1:])
