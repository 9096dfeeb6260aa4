"""Build and export (no renders) the 3DTrajMaster conditioning scene, in its own process so bpy stays out of pytest.

    python tests/pipelines/trajmaster3d_scene.py OUT.zip

A static camera at the origin looks along world +Y (Z up), 53.03 mm on Blender's 36 mm sensor (the training rig's
37.5° horizontal FOV), 720×480, frames 1..49 at 24 fps. Two entities share one path: at (0, 5, 0) on frame 1, then
1 m to the right and yawed +90° about Z on frame 47 (latent frame 12 samples shot frame index 46), held to 49.
"Walker" keeps the default axes (forward -Y, up Z); "Racer" faces +X (forward X, up Z).
"""

import math
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

END_FRAME = 47
CAPTION = "a tall slender robot with polished silver armour glowing blue eyes and long jointed arms walking slowly forward"


def build(scene):
    from support.scenes import add_camera, add_mesh, entity_collection, key_path, set_render

    from addon.export import props

    set_render(scene, 720, 480, 49)
    scene[props.SCENE_PROMPT] = "two robots on a plain"
    scene[props.LOCATION_PROMPT] = "the desert"
    camera = add_camera(scene, (0.0, 0.0, 0.0), (0.0, 5.0, 0.0), lens=35.0 * 36.0 / 23.76)
    camera.data.sensor_fit = "HORIZONTAL"
    collection = entity_collection(scene)
    for name, forward in (("Walker", "-Y"), ("Racer", "X")):
        entity = add_mesh("cube", collection, name, size=0.5)
        entity[props.PROMPT] = CAPTION
        entity[props.FORWARD_AXIS] = forward
        entity[props.UP_AXIS] = "Z"
        key_path(entity, [(1, (0.0, 5.0, 0.0)), (END_FRAME, (1.0, 5.0, 0.0))])
        key_path(entity, [(1, (0.0, 0.0, 0.0)), (END_FRAME, (0.0, 0.0, math.radians(90.0)))], "rotation_euler")
    scene.frame_set(1)


def main(out):
    import bpy

    import addon
    from addon.export import ExportOptions, export_shot

    bpy.ops.wm.read_homefile(use_empty=True)
    build(bpy.context.scene)
    addon.register()
    try:
        export_shot(out, bpy.context.scene, ExportOptions(include_renders=False))
    finally:
        addon.unregister()  # a class left registered hangs bpy 4.5 at exit


if __name__ == "__main__":
    main(Path(sys.argv[1]))
