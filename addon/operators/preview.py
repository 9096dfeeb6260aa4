"""Preview controls: export the shot, draw what the chosen pipeline receives, import it as an image strip."""

from __future__ import annotations

import tempfile
from pathlib import Path

import bpy
import numpy as np

from .. import compat, prefs, preview, sequencer
from ..export.errors import ExportError
from ..export.exporter import ExportOptions, export_shot


def _png_to_rgb(png: bytes, folder: Path) -> np.ndarray:
    """Decode PNG bytes with Blender's image loader: (H, W, 3) uint8 RGB, top row first."""
    path = folder / "first_frame.png"
    path.write_bytes(png)
    image = bpy.data.images.load(str(path))
    try:
        w, h = image.size
        pixels = np.empty(w * h * 4, np.float32)
        image.pixels.foreach_get(pixels)
    finally:
        bpy.data.images.remove(image)
    # Blender stores rows bottom-up, and PNG pixels as display values in 0..1 (sRGB, no view transform).
    return (pixels.reshape(h, w, 4)[::-1, :, :3] * 255 + 0.5).astype(np.uint8)


def _write_frames(frames: np.ndarray, folder: Path) -> list[str]:
    """Write (F, H, W, 3) uint8 frames as 0001.png... in ``folder``; returns the file names."""
    folder.mkdir(parents=True, exist_ok=True)
    count, h, w, _ = frames.shape
    image = bpy.data.images.new("trajplate_preview", w, h, alpha=False)
    names = []
    try:
        rgba = np.ones((h, w, 4), np.float32)
        for i in range(count):
            rgba[..., :3] = frames[i][::-1] / 255.0
            image.pixels.foreach_set(rgba.ravel())
            names.append(f"{i + 1:04d}.png")
            image.filepath_raw = str(folder / names[-1])
            image.file_format = "PNG"
            image.save()
    finally:
        bpy.data.images.remove(image)
    return names


class TRAJPLATE_OT_preview_controls(bpy.types.Operator):
    bl_idname = "trajplate.preview_controls"
    bl_label = "Preview Controls"
    bl_description = ("Draw what the chosen pipeline receives (boxes, tracks, masks, camera-relative axes) over the "
                      "first frame and add it to the sequencer; no backend needed")

    def execute(self, context):
        scene = context.scene
        settings = scene.trajplate
        folder, warning = sequencer.takes_folder(prefs.get(context).takes_dir, scene.name)
        work = Path(tempfile.mkdtemp(prefix="trajplate-preview-"))
        frame_range = None if settings.use_scene_range else (settings.frame_start, settings.frame_end,
                                                                 scene.frame_step)
        try:
            export_shot(work / "shot.zip", scene=scene,
                        options=ExportOptions(include_renders=True, frame_range=frame_range))
        except ExportError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        meta, arrays, png = preview.read_bundle(work / "shot.zip")
        colours = np.array([e["color"] for e in meta["entities"]], np.uint8).reshape(-1, 3)
        frames = preview.draw_controls(_png_to_rgb(png, work), arrays, colours, settings.pipeline)
        out = folder / f"controls_{sequencer.slug(settings.pipeline)}"
        names = _write_frames(frames, out)
        start = int(arrays["frame_numbers"][0])
        end = int(arrays["frame_numbers"][-1])
        target = compat.sequencer_scene(context)
        editor = target.sequence_editor_create()
        name = f"{scene.name} · controls · {settings.pipeline}"
        old = compat.strips(editor).get(name)
        if old is not None:
            compat.strips(editor).remove(old)
        strip = compat.strips(editor).new_image(name, str(out / names[0]), sequencer.free_channel(editor, start,
                                                                                                 end + 1), start)
        for n in names[1:]:
            strip.elements.append(n)
        # The shot may be sampled every frame_step frames: stretch so the preview spans the shot too.
        strip.frame_final_end = start + len(names)
        if len(names) > 1 and end - start + 1 != len(names):
            sequencer.retime(target, strip, start, end)
            strip.frame_final_end = end + 1
        if warning:
            self.report({"WARNING"}, warning)
        self.report({"INFO"}, f"Control preview added: {name}")
        return {"FINISHED"}


CLASSES = (TRAJPLATE_OT_preview_controls,)
