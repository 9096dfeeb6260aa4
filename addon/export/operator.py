"""``bpy.ops.trajplate.export_shot`` and the ``trajplate`` command-line command."""

import bpy
from bpy.props import BoolProperty, IntProperty, StringProperty
from bpy_extras.io_utils import ExportHelper

from .cli import cli_handler
from .errors import ExportError
from .exporter import ExportOptions, export_shot


class TRAJPLATE_OT_export_shot(bpy.types.Operator, ExportHelper):
    """Export the shot (camera, entities, depth, masks) as a TrajPlate shot bundle"""

    bl_idname = "trajplate.export_shot"
    bl_label = "Export TrajPlate Shot"
    bl_options = {"REGISTER"}

    filename_ext = ".zip"
    filter_glob: StringProperty(default="*.zip", options={"HIDDEN"})
    include_renders: BoolProperty(
        name="Renders", default=True, description="Render depth, instance masks and the first frame (Cycles, CPU)"
    )
    include_rgb_frames: BoolProperty(
        name="RGB Frames", default=False, description="Also render every exported frame with the scene's engine"
    )
    use_scene_range: BoolProperty(name="Scene Range", default=True, description="Use the scene's frame range and step")
    frame_start: IntProperty(name="Start", default=1)
    frame_end: IntProperty(name="End", default=49)
    frame_step: IntProperty(name="Step", default=1, min=1)
    camera: StringProperty(name="Camera", default="", description="Camera for every frame (empty: the scene camera)")

    def execute(self, context):
        frame_range = None if self.use_scene_range else (self.frame_start, self.frame_end, self.frame_step)
        options = ExportOptions(self.include_renders, self.include_rgb_frames, frame_range, self.camera)
        wm = context.window_manager
        interactive = not bpy.app.background
        started = []

        def progress(done, total, _stage):
            if not started:
                wm.progress_begin(0, total)
                started.append(total)
            wm.progress_update(done)

        try:
            result = export_shot(self.filepath, context.scene, options, progress if interactive else None)
        except ExportError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        finally:
            if started:
                wm.progress_end()
        for warning in result.warnings:
            self.report({"WARNING"}, warning)
        self.report({"INFO"}, f"Exported {result.frame_count} frames of {len(result.entity_names)} entities "
                              f"to {result.path}")
        return {"FINISHED"}


_cli = []


def register():
    bpy.utils.register_class(TRAJPLATE_OT_export_shot)
    _cli.append(bpy.utils.register_cli_command("trajplate", cli_handler))


def unregister():
    while _cli:
        bpy.utils.unregister_cli_command(_cli.pop())
    bpy.utils.unregister_class(TRAJPLATE_OT_export_shot)
