"""The export against Blender itself on built scenes, one per trap of camera, pose and frame handling (real bpy)."""

import math

import numpy as np
import pytest
from support.checks import check_against_blender, evaluated_world_vertices
from support.scenes import add_camera, add_mesh, build_standard_shot, key_path

pytestmark = pytest.mark.blender_compat


def _export(scene, **options):
    from addon.export import ExportOptions, build_shot

    meta, arrays, _frames, warnings = build_shot(scene, ExportOptions(include_renders=False, **options))
    return meta, arrays, warnings


@pytest.fixture
def small_shot(empty_scene):
    return build_standard_shot(160, 96, 9)


def _camera_setup(scene, case):
    cam = scene.camera.data
    render = scene.render
    if case == "vertical_fit":
        cam.sensor_fit, cam.sensor_height = "VERTICAL", 20.0
    elif case == "auto_portrait":
        render.resolution_x, render.resolution_y = 96, 160
    elif case == "lens_shift":
        cam.shift_x, cam.shift_y = 0.08, -0.05
    elif case == "pixel_aspect_2_1":
        render.pixel_aspect_x, render.pixel_aspect_y = 2.0, 1.0
    elif case == "resolution_50":
        render.resolution_x, render.resolution_y, render.resolution_percentage = 320, 192, 50


@pytest.mark.parametrize("case", ["vertical_fit", "auto_portrait", "lens_shift", "pixel_aspect_2_1", "resolution_50"])
def test_camera_model_matches_blender(small_shot, case):
    _camera_setup(small_shot, case)
    meta, arrays, _ = _export(small_shot)
    check_against_blender(small_shot, meta, arrays)
    if case == "resolution_50":
        assert meta["resolution"] == [160, 96]


def test_odd_resolution_percentage_uses_rendered_size(small_shot):
    """321 × 193 at 50 % renders 160 × 96 (truncated). K follows the rendered pixels; ``world_to_camera_view`` uses
    the aspect of the unscaled 321 × 193 and is off by ~0.02 px here, so it is not the reference in this case."""
    render = small_shot.render
    render.resolution_x, render.resolution_y, render.resolution_percentage = 321, 193, 50
    meta, arrays, _ = _export(small_shot)
    assert meta["resolution"] == [160, 96]
    np.testing.assert_allclose(arrays["intrinsics"][0], [[30 / 36 * 160, 0, 80], [0, 30 / 36 * 160, 48], [0, 0, 1]])


def test_animated_focal_length(small_shot):
    cam = small_shot.camera.data
    cam.lens = 20.0
    cam.keyframe_insert("lens", frame=1)
    cam.lens = 60.0
    cam.keyframe_insert("lens", frame=9)
    meta, arrays, _ = _export(small_shot)
    check_against_blender(small_shot, meta, arrays)
    fx = arrays["intrinsics"][:, 0, 0]
    assert fx[0] == pytest.approx(20.0 / 36.0 * 160) and fx[-1] == pytest.approx(60.0 / 36.0 * 160)
    assert (np.diff(fx) > 0).all()
    assert meta["camera_settings"]["lens_mm"] == pytest.approx(20.0)


def test_focal_length_set_by_a_frame_change_handler(small_shot):
    """A lens changed by a script at every frame (no keyframes anywhere) still lands in K frame by frame."""
    import bpy

    def zoom(scene, _depsgraph=None):
        scene.camera.data.lens = 20.0 + 5.0 * scene.frame_current

    bpy.app.handlers.frame_change_pre.append(zoom)
    try:
        meta, arrays, _ = _export(small_shot)
    finally:
        bpy.app.handlers.frame_change_pre.remove(zoom)
    fx = arrays["intrinsics"][:, 0, 0]
    np.testing.assert_allclose(fx, (20.0 + 5.0 * arrays["frame_numbers"]) / 36.0 * 160)


def test_camera_switch_by_markers(small_shot):
    first = small_shot.camera
    second = add_camera(small_shot, (6.0, -8.0, 2.0), (0.0, 0.0, 0.5), lens=50.0, name="CamB")
    small_shot.camera = first
    small_shot.timeline_markers.new("A", frame=1).camera = first
    small_shot.timeline_markers.new("B", frame=5).camera = second
    meta, arrays, _ = _export(small_shot)
    assert meta["cameras"] == ["Camera"] * 4 + ["CamB"] * 5
    check_against_blender(small_shot, meta, arrays, box_frames=(3, 4))


def test_parented_and_constrained_entities(empty_scene):
    import bpy

    scene = build_standard_shot(160, 96, 9)
    coll = bpy.data.collections["TrajPlate"]
    rig = bpy.data.objects.new("Rig", None)
    scene.collection.objects.link(rig)
    key_path(rig, [(1, (0.0, 0.0, 0.0)), (9, (0.0, 0.0, math.radians(60)))], "rotation_euler")
    child = add_mesh("cube", coll, "Child", size=0.5, location=(2.0, 1.0, 0.5))
    child.parent = rig
    follower = add_mesh("cube", coll, "Follower", size=0.4, location=(0.0, 0.0, 0.0))
    follow = follower.constraints.new("COPY_LOCATION")
    follow.target = scene.objects["Sphere"]
    follow.use_offset = False
    track = follower.constraints.new("TRACK_TO")
    track.target = scene.camera
    meta, arrays, _ = _export(scene)
    check_against_blender(scene, meta, arrays)
    names = [e["name"] for e in meta["entities"]]
    sphere, fol = names.index("Sphere"), names.index("Follower")
    np.testing.assert_allclose(arrays["entity_position"][:, fol], arrays["entity_position"][:, sphere], atol=1e-6)
    assert np.ptp(arrays["entity_position"][:, names.index("Child"), 0]) > 0.1  # moves only through its parent


@pytest.mark.parametrize("mode", ["QUATERNION", "AXIS_ANGLE", "ZXY"])
def test_rotation_modes(small_shot, mode):
    cube = small_shot.objects["Cube"]
    cube.animation_data_clear()
    cube.rotation_mode = mode
    if mode == "QUATERNION":
        key_path(cube, [(1, (1.0, 0.0, 0.0, 0.0)), (9, (0.5, 0.5, 0.5, 0.5))], "rotation_quaternion")
    elif mode == "AXIS_ANGLE":
        key_path(cube, [(1, (0.0, 0.0, 0.0, 1.0)), (9, (2.5, 0.3, 0.4, 0.87))], "rotation_axis_angle")
    else:
        key_path(cube, [(1, (0.0, 0.0, 0.0)), (9, (0.4, 1.9, -2.8))], "rotation_euler")
    meta, arrays, _ = _export(small_shot)
    check_against_blender(small_shot, meta, arrays)
    j = [e["name"] for e in meta["entities"]].index("Cube")
    q = arrays["entity_quaternion_wxyz"][:, j]
    for f, frame in enumerate(arrays["frame_numbers"]):
        small_shot.frame_set(int(frame))
        expected = np.array(cube.matrix_world.to_quaternion())
        assert abs(abs(q[f] @ expected) - 1.0) < 1e-6  # same rotation up to sign
    assert (np.sum(q[1:] * q[:-1], axis=1) >= 0).all()  # no sign flips between frames
    assert q[0, 0] >= 0


def test_skinned_mesh_box_follows_deformation(empty_scene):
    import bpy

    scene = build_standard_shot(160, 96, 9)
    coll = bpy.data.collections["TrajPlate"]
    arm_data = bpy.data.armatures.new("Arm")
    rig = bpy.data.objects.new("Arm", arm_data)
    scene.collection.objects.link(rig)
    bpy.context.view_layer.objects.active = rig
    bpy.ops.object.mode_set(mode="EDIT")
    root = arm_data.edit_bones.new("root")
    root.head, root.tail = (2.0, -1.0, 0.0), (2.0, -1.0, 1.0)
    tip = arm_data.edit_bones.new("tip")
    tip.head, tip.tail, tip.parent = (2.0, -1.0, 1.0), (2.0, -1.0, 2.0), root
    bpy.ops.object.mode_set(mode="OBJECT")
    tube = add_mesh("cylinder", coll, "Tube", radius=0.2, depth=2.0, location=(2.0, -1.0, 1.0))
    bpy.ops.object.select_all(action="DESELECT")
    tube.select_set(True)
    rig.select_set(True)
    bpy.context.view_layer.objects.active = rig
    bpy.ops.object.parent_set(type="ARMATURE_AUTO")
    pose_bone = rig.pose.bones["tip"]
    pose_bone.rotation_mode = "XYZ"
    key_path(pose_bone, [(1, (0.0, 0.0, 0.0)), (9, (0.0, math.radians(90), 0.0))], "rotation_euler")
    meta, arrays, _ = _export(scene)
    check_against_blender(scene, meta, arrays, box_frames=(0, 4, -1))
    j = [e["name"] for e in meta["entities"]].index("Tube")
    np.testing.assert_allclose(arrays["entity_world"][0, j], arrays["entity_world"][-1, j])  # the object stays put
    assert np.abs(arrays["box_2d"][-1, j] - arrays["box_2d"][0, j]).max() > 3.0  # ... its geometry does not
    scene.frame_set(9)
    bounds = evaluated_world_vertices(tube)
    np.testing.assert_allclose(arrays["box_3d_world"][-1, j].min(0), bounds.min(0), atol=1e-5)


def test_keyed_vertex_coordinates_move_the_box(empty_scene):
    """Mesh data animated without shape keys (keyframes on ``vertices[i].co``) is deforming geometry, not rigid."""
    import bpy

    scene = build_standard_shot(160, 96, 9)
    cube = bpy.data.objects["Cube"]
    cube.animation_data_clear()  # the object stays put: only its vertices move
    for v in cube.data.vertices:
        v.keyframe_insert("co", frame=1)
        v.co.x += 1.5
        v.keyframe_insert("co", frame=9)
    meta, arrays, _ = _export(scene)
    check_against_blender(scene, meta, arrays, box_frames=(0, 4, -1))
    j = [e["name"] for e in meta["entities"]].index("Cube")
    assert arrays["box_2d"][-1, j, 0] - arrays["box_2d"][0, j, 0] > 3.0


def test_entity_straddling_the_camera_clips_at_the_near_plane(small_shot):
    """A bar reaching from behind the camera to 8 m ahead of it, beside it: its box runs to the image edge only through
    the edges crossing the near plane (read from the mesh on demand), checked against the same clipping fed with
    Blender's own vertices and edges."""
    import bpy

    from addon.export.geometry import tight_boxes

    wall = add_mesh("cube", bpy.data.collections["TrajPlate"], "Wall", size=1.0, location=(1.0, -9.5, 3.0))
    wall.scale = (0.2, 9.0, 0.2)  # y from -14 to -5; the camera is at (0, -13, 3) at frame 1
    meta, arrays, _ = _export(small_shot)
    j = [e["name"] for e in meta["entities"]].index("Wall")
    mesh = wall.data
    local = np.array([v.co for v in mesh.vertices])
    edges = np.array([e.vertices[:] for e in mesh.edges])
    world = np.array(wall.matrix_world)
    w2c, K = arrays["camera_w2c_opencv"][0], arrays["intrinsics"][0]
    cam = (local @ world[:3, :3].T + world[:3, 3]) @ w2c[:3, :3].T + w2c[:3, 3]
    assert (cam[:, 2] < meta["camera_settings"]["clip_start"]).any() and (cam[:, 2] > 1.0).any()  # it straddles
    box, ok = tight_boxes(cam[None], K[None], *meta["resolution"], meta["camera_settings"]["clip_start"], edges)
    assert ok[0] and arrays["box_2d_valid"][0, j] and box[0, 2] == meta["resolution"][0]  # clipped at the right edge
    np.testing.assert_allclose(arrays["box_2d"][0, j], box[0], atol=1e-3)


def test_mesh_swapped_by_a_frame_change_handler(small_shot):
    """Stop-motion rigs swap an object's mesh data at every frame from a handler: the boxes follow the swapped mesh,
    although the object has no modifiers and its own mesh has no animation."""
    import bpy
    from mathutils import Matrix

    cube = bpy.data.objects["Cube"]
    cube.animation_data_clear()
    small, big = cube.data, cube.data.copy()
    big.transform(Matrix.Diagonal((3.0, 3.0, 3.0, 1.0)))

    def swap(scene, _depsgraph=None):
        scene.objects["Cube"].data = big if scene.frame_current % 2 else small

    bpy.app.handlers.frame_change_pre.append(swap)
    try:
        meta, arrays, _ = _export(small_shot)
        check_against_blender(small_shot, meta, arrays, box_frames=(0, 1, 2))
    finally:
        bpy.app.handlers.frame_change_pre.remove(swap)
    j = [e["name"] for e in meta["entities"]].index("Cube")
    width = arrays["box_2d"][:, j, 2] - arrays["box_2d"][:, j, 0]
    assert width[0] > 2 * width[1]  # frame 1 shows the big mesh, frame 2 the small one


def test_build_modifier_changes_topology_over_the_frames(small_shot):
    """A Build modifier adds faces frame by frame: each frame's box is that of its own evaluated geometry."""
    import bpy

    sphere = bpy.data.objects["Sphere"]
    build = sphere.modifiers.new("Build", "BUILD")
    build.frame_start, build.frame_duration = 1, 8
    counts = []
    for frame in (2, 5, 9):
        small_shot.frame_set(frame)
        counts.append(len(evaluated_world_vertices(sphere)))
    assert len(set(counts)) == 3  # the topology really changes
    meta, arrays, _ = _export(small_shot)
    check_against_blender(small_shot, meta, arrays, box_frames=(1, 4, -1))


def test_unforeseen_topology_change_falls_back_frame_by_frame(small_shot, monkeypatch):
    """Should a modifier taken to only deform change the vertex count after all (simulated with Build), the frames
    read so far are kept and the rest are read whole, frame by frame."""
    import bpy

    from addon.export import sampling

    monkeypatch.setattr(sampling, "_DEFORM_ONLY", sampling._DEFORM_ONLY | {"BUILD"})
    sphere = bpy.data.objects["Sphere"]
    build = sphere.modifiers.new("Build", "BUILD")
    build.frame_start, build.frame_duration = 4, 10  # whole until frame 4, then faces go
    build.use_reverse = True
    meta, arrays, _ = _export(small_shot)
    check_against_blender(small_shot, meta, arrays, box_frames=(0, 2, 5, -1))
    small_shot.frame_set(9)
    assert len(evaluated_world_vertices(sphere)) < len(sphere.data.vertices)


def test_deforming_entity_straddling_the_camera_clips_at_the_near_plane(small_shot):
    """A bent bar (Simple Deform: positions move, topology stays) reaching from behind the camera: its box comes from
    its mesh edges crossing the near plane, checked against the same clipping fed with Blender's evaluated vertices
    and edges."""
    import bpy
    from mathutils import Matrix

    from addon.export.geometry import tight_boxes

    wall = add_mesh("cube", bpy.data.collections["TrajPlate"], "Wall", size=1.0, location=(1.0, -9.5, 3.0))
    wall.data.transform(Matrix.Diagonal((0.2, 9.0, 0.2, 1.0)))  # y from -14 to -5: it reaches behind the camera
    bend = wall.modifiers.new("Bend", "SIMPLE_DEFORM")
    bend.deform_method, bend.deform_axis = "BEND", "Z"
    bend.angle = 0.0
    bend.keyframe_insert("angle", frame=1)
    bend.angle = math.radians(40)
    bend.keyframe_insert("angle", frame=9)
    meta, arrays, _ = _export(small_shot)
    j = [e["name"] for e in meta["entities"]].index("Wall")
    depsgraph = bpy.context.evaluated_depsgraph_get()
    for f in (0, len(arrays["frame_numbers"]) - 1):
        small_shot.frame_set(int(arrays["frame_numbers"][f]))
        mesh = wall.evaluated_get(depsgraph).to_mesh()
        local = np.array([v.co for v in mesh.vertices])
        edges = np.array([e.vertices[:] for e in mesh.edges])
        wall.evaluated_get(depsgraph).to_mesh_clear()
        world = np.array(wall.matrix_world)
        w2c, K = arrays["camera_w2c_opencv"][f], arrays["intrinsics"][f]
        cam = (local @ world[:3, :3].T + world[:3, 3]) @ w2c[:3, :3].T + w2c[:3, 3]
        assert (cam[:, 2] < meta["camera_settings"]["clip_start"]).any() and (cam[:, 2] > 1.0).any()
        box, ok = tight_boxes(cam[None], K[None], *meta["resolution"], meta["camera_settings"]["clip_start"], edges)
        assert ok[0] and arrays["box_2d_valid"][f, j]
        np.testing.assert_allclose(arrays["box_2d"][f, j], box[0], atol=1e-3)
    assert np.abs(arrays["box_2d"][-1, j] - arrays["box_2d"][0, j]).max() > 1.0  # the bend moves the box


def test_entity_behind_another_flips_visibility(small_shot):
    meta, arrays, _ = _export(small_shot)
    names = [e["name"] for e in meta["entities"]]
    visible = arrays["track_visible"][:, names.index("Sphere")]
    assert visible[0] and visible[-1] and not visible.all()
    assert arrays["track_in_frame"].all() and arrays["track_visible"][:, names.index("Cube")].all()


def test_frame_step_and_negative_frames(small_shot):
    small_shot.render.fps, small_shot.render.fps_base = 30, 1.001
    meta, arrays, _ = _export(small_shot, frame_range=(-5, 8, 2))
    np.testing.assert_array_equal(arrays["frame_numbers"], [-5, -3, -1, 1, 3, 5, 7])
    np.testing.assert_allclose(arrays["time_s"], np.arange(7) * 2 * 1.001 / 30)
    assert (meta["frame_start"], meta["frame_end"], meta["frame_step"], meta["frame_count"]) == (-5, 7, 2, 7)
    check_against_blender(small_shot, meta, arrays)


def test_scene_step_two_is_used(small_shot):
    small_shot.frame_step = 2
    meta, arrays, _ = _export(small_shot)
    np.testing.assert_array_equal(arrays["frame_numbers"], [1, 3, 5, 7, 9])


def test_unit_scale(small_shot):
    small_shot.unit_settings.scale_length = 0.01
    meta, arrays, _ = _export(small_shot)
    assert meta["unit_scale"] == pytest.approx(0.01)
    check_against_blender(small_shot, meta, arrays)
    cube = small_shot.objects["Cube"]
    small_shot.frame_set(1)
    j = [e["name"] for e in meta["entities"]].index("Cube")
    np.testing.assert_allclose(arrays["entity_position"][0, j], np.array(cube.matrix_world.translation) * 0.01)
    # Rotation-only quantities do not change with units; the OpenCV pose translation is in metres.
    w2c = arrays["camera_w2c_opencv"][0]
    np.testing.assert_allclose(arrays["entity_cam_opencv"][0, j, :3, 3],
                               w2c[:3, :3] @ arrays["entity_position"][0, j] + w2c[:3, 3], atol=1e-9)
