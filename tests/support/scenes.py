"""Scene builders for tests and benchmarks (pure bpy; run in a fresh file: ``read_homefile(use_empty=True)``).

Every builder works on ``bpy.context.scene``, keeps the scene on Cycles (EEVEE is very slow headless) and returns it.
"""

import math

import bpy
from mathutils import Vector

from addon.export import props


def set_render(scene, width=720, height=480, frames=49, fps=24, samples=4):
    """Cycles on the CPU at a few samples, ``width`` × ``height`` at 100 %, frames 1..``frames``."""
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = samples
    scene.cycles.use_denoising = False
    scene.cycles.use_adaptive_sampling = False
    scene.render.resolution_x, scene.render.resolution_y = width, height
    scene.render.resolution_percentage = 100
    scene.render.fps, scene.render.fps_base = fps, 1.0
    scene.frame_start, scene.frame_end, scene.frame_step = 1, frames, 1
    scene.frame_set(1)


def add_camera(scene, location, target, lens=35.0, name="Camera"):
    """A perspective camera at ``location`` looking at ``target``, made the scene camera."""
    cam = bpy.data.objects.new(name, bpy.data.cameras.new(name))
    cam.data.lens = lens
    scene.collection.objects.link(cam)
    look_at(cam, location, target)
    scene.camera = cam
    return cam


def look_at(obj, location, target):
    """Place ``obj`` at ``location`` with its -Z axis towards ``target`` and +Y up (a camera's framing)."""
    obj.location = location
    direction = Vector(target) - Vector(location)
    obj.rotation_euler = direction.to_track_quat("-Z", "Y").to_euler()


def key_path(obj, frames_and_locations, attr="location"):
    """Keyframe ``obj.<attr>`` at each (frame, value) (Blender's default Bezier easing)."""
    for frame, value in frames_and_locations:
        setattr(obj, attr, value)
        obj.keyframe_insert(attr, frame=frame)


def entity_collection(scene):
    coll = bpy.data.collections.new(props.ENTITY_COLLECTION)
    scene.collection.children.link(coll)
    return coll


def add_mesh(kind, collection, name, **kwargs):
    """A primitive (``kind`` 'cube' | 'uv_sphere' | 'cone' | 'plane' | 'cylinder') linked only to ``collection``."""
    getattr(bpy.ops.mesh, f"primitive_{kind}_add")(**kwargs)
    obj = bpy.context.active_object
    obj.name = name
    for coll in list(obj.users_collection):
        coll.objects.unlink(obj)
    collection.objects.link(obj)
    return obj


def material(name, color):
    mat = bpy.data.materials.new(name)
    mat.use_nodes = True
    mat.node_tree.nodes["Principled BSDF"].inputs["Base Color"].default_value = (*color, 1.0)
    return mat


def add_ground(scene, size=40.0):
    """A ground plane (not an entity) with a procedural checker + noise texture, so it is trackable."""
    ground = add_mesh("plane", scene.collection, "Ground", size=size)
    mat = bpy.data.materials.new("GroundChecker")
    mat.use_nodes = True
    nodes, links = mat.node_tree.nodes, mat.node_tree.links
    checker = nodes.new("ShaderNodeTexChecker")
    checker.inputs["Scale"].default_value = 24.0
    noise = nodes.new("ShaderNodeTexNoise")
    mix = nodes.new("ShaderNodeMix")
    mix.data_type = "RGBA"
    mix.inputs["Factor"].default_value = 0.35
    links.new(checker.outputs["Color"], mix.inputs["A"])
    links.new(noise.outputs["Color"], mix.inputs["B"])
    links.new(mix.outputs["Result"], nodes["Principled BSDF"].inputs["Base Color"])
    ground.data.materials.append(mat)
    return ground


def add_sun(scene):
    sun = bpy.data.objects.new("Sun", bpy.data.lights.new("Sun", "SUN"))
    sun.data.energy = 3.0
    sun.rotation_euler = (math.radians(40), math.radians(15), math.radians(30))
    scene.collection.objects.link(sun)
    world = bpy.data.worlds.new("World")
    world.color = (0.4, 0.45, 0.55)
    scene.world = world
    return sun


def build_standard_shot(width=720, height=480, frames=49):
    """The standard shot: 3 entities on distinct keyframed paths, a dollying camera, a textured ground.

    Cube, Sphere and Cone sit in the ``TrajPlate`` collection (the ground and the sun do not); all stay in view.
    The sphere, farther from the camera, crosses behind the cube around the middle frame, so its origin is hidden
    for a few frames. Cycles, ``width`` × ``height``, frames 1..``frames`` at 24 fps, prompts set.
    """
    scene = bpy.context.scene
    set_render(scene, width, height, frames)
    scene[props.SCENE_PROMPT] = "three toy shapes glide across a chequered floor"
    scene[props.LOCATION_PROMPT] = "a bright studio with a chequered floor"
    add_ground(scene)
    add_sun(scene)
    cam = add_camera(scene, (0.0, -13.0, 3.0), (0.0, 0.0, 0.8), lens=30.0)
    key_path(cam, [(1, (0.0, -13.0, 3.0)), (frames, (0.0, -11.0, 2.6))])
    coll = entity_collection(scene)
    last, mid = frames, (1 + frames) / 2
    cube = add_mesh("cube", coll, "Cube", size=1.2, location=(0, 0, 0.6))
    cube.data.materials.append(material("Red", (0.8, 0.1, 0.1)))
    cube[props.PROMPT] = "a red wooden toy block"
    key_path(cube, [(1, (-2.5, 0.0, 0.6)), (last, (2.5, 0.0, 0.6))])
    key_path(cube, [(1, (0.0, 0.0, 0.0)), (last, (0.0, 0.0, math.radians(90)))], "rotation_euler")
    sphere = add_mesh("uv_sphere", coll, "Sphere", radius=0.6, location=(0, 3, 0.6))
    sphere.data.materials.append(material("Blue", (0.1, 0.2, 0.8)))
    sphere[props.PROMPT] = "a shiny blue ball"
    # Crosses x = 0 at the middle frame, as the cube does: the camera sees it pass behind the cube.
    key_path(sphere, [(1, (3.0, 3.0, 0.6)), (last, (-3.0, 3.0, 0.6))])
    cone = add_mesh("cone", coll, "Cone", radius1=0.5, depth=1.2, location=(0, -2, 0.6))
    cone.data.materials.append(material("Green", (0.1, 0.7, 0.2)))
    cone[props.PROMPT] = "a green traffic cone"
    key_path(cone, [(1, (-3.0, -2.5, 0.6)), (int(mid), (-1.0, -1.5, 1.2)), (last, (-2.0, -3.5, 0.6))])
    scene.frame_set(1)
    return scene
