"""Independent checks of exported arrays against Blender itself (bpy; ``world_to_camera_view``, ``matrix_world``).

The export computes everything with its own K and NumPy; these helpers recompute per point through Blender's API.
"""

import bpy
import numpy as np
from bpy_extras.object_utils import world_to_camera_view
from mathutils import Vector


def blender_pixel(scene, cam, point):
    """(u, v, z) of a world point (Blender units) by Blender: pixel-corner coordinates, z = camera depth (BU)."""
    ndc = world_to_camera_view(scene, cam, Vector(point))
    width = scene.render.resolution_x * scene.render.resolution_percentage // 100
    height = scene.render.resolution_y * scene.render.resolution_percentage // 100
    return ndc.x * width, (1.0 - ndc.y) * height, ndc.z


def evaluated_world_vertices(obj):
    """(V, 3) world-space vertices (Blender units) of the evaluated object at the current frame."""
    depsgraph = bpy.context.evaluated_depsgraph_get()
    ob_eval = obj.evaluated_get(depsgraph)
    mesh = ob_eval.to_mesh()
    local = np.array([v.co for v in mesh.vertices])
    ob_eval.to_mesh_clear()
    mat = np.array(ob_eval.matrix_world)
    return local @ mat[:3, :3].T + mat[:3, 3]


def check_against_blender(scene, meta, arrays, box_frames=(0, -1), tol_px=0.01):
    """Assert poses equal ``matrix_world`` and projections equal ``world_to_camera_view`` at every exported frame,
    3D boxes equal the evaluated ``bound_box`` and 2D boxes equal the box of Blender-projected evaluated vertices at ``box_frames`` (positions in the export)
    for entities fully in front of the camera. Restores nothing: call on a scene you own."""
    scale = meta["unit_scale"]
    objects = [scene.objects[e["name"]] for e in meta["entities"]]
    width, height = meta["resolution"]
    box_positions = {p % len(arrays["frame_numbers"]) for p in box_frames}
    for f, frame in enumerate(arrays["frame_numbers"]):
        scene.frame_set(int(frame))
        cam = scene.objects[meta["cameras"][f]]
        cam_world = np.array(cam.matrix_world)
        np.testing.assert_allclose(arrays["camera_c2w_blender"][f, :3, 3], cam_world[:3, 3] * scale, atol=1e-6)
        for j, obj in enumerate(objects):
            world = np.array(obj.matrix_world)
            expected = world.copy()
            expected[:3, 3] *= scale
            np.testing.assert_allclose(arrays["entity_world"][f, j], expected, atol=1e-5, err_msg=obj.name)
            u, v, z = blender_pixel(scene, cam, world[:3, 3])
            np.testing.assert_allclose(arrays["track_depth"][f, j], z * scale, rtol=1e-5, atol=1e-6)
            if z > 0:
                np.testing.assert_allclose(arrays["track_2d"][f, j], (u, v), atol=tol_px, err_msg=f"{obj.name} @{frame}")
            if f in box_positions:  # oriented 3D box: Blender's evaluated bound_box through matrix_world
                corners = np.array(obj.evaluated_get(bpy.context.evaluated_depsgraph_get()).bound_box)
                np.testing.assert_allclose(arrays["box_3d_world"][f, j], (corners @ world[:3, :3].T + world[:3, 3])
                                           * scale, atol=1e-5, err_msg=f"box_3d {obj.name} @{frame}")
            if f in box_positions and obj.type == "MESH":
                pts = np.array([blender_pixel(scene, cam, p) for p in evaluated_world_vertices(obj)])
                if (pts[:, 2] > cam.data.clip_start).all():
                    lo = np.clip(pts[:, :2].min(0), 0, (width, height))
                    hi = np.clip(pts[:, :2].max(0), 0, (width, height))
                    if (hi > lo).all():
                        assert arrays["box_2d_valid"][f, j]
                        np.testing.assert_allclose(arrays["box_2d"][f, j], [*lo, *hi], atol=tol_px,
                                                   err_msg=f"box {obj.name} @{frame}")
