"""Renders of the export: per-frame depth + instance masks (Cycles data passes) and beauty frames (PNG).

Every setting touched goes through :class:`.overrides.Overrides`, so the user's scene is restored even on error or
cancel. Data passes use Cycles on the CPU at 1 sample, no bounces, no denoising, no motion blur or depth of field and
a 0.01 px box filter, so each pixel holds the surface hit by the ray through its centre (pixel-corner K + 0.5). They go
to uncompressed multilayer EXR files in a temporary folder and are read back with :mod:`.exr`.
"""

import os

import bpy
import numpy as np

from .. import compat
from .errors import ExportCancelled
from .exr import find_pass, read_exr
from .overrides import Overrides

BACKGROUND_DEPTH = 1e9  # Cycles writes 1e10 where a ray hits nothing


def _check(is_cancelled):
    if is_cancelled is not None and is_cancelled():
        raise ExportCancelled("Export cancelled.")


def _render_frame(scene, view_layer, frame, camera, path):
    scene.frame_set(int(frame))
    if camera is not None:
        scene.camera = camera  # markers re-bind scene.camera on frame_set; the export's camera wins
    scene.render.filepath = path
    bpy.ops.render.render(write_still=True, scene=scene.name, layer=view_layer.name)


def _plain_output(ov, scene, camera):
    """Settings every export render needs: full frame, the 3D scene rather than sequencer strips, a fixed file name."""
    render = scene.render
    ov.set(render, "use_border", False)
    ov.set(render, "use_sequencer", False)
    ov.set(render, "use_file_extension", True)
    ov.set(render, "filepath", render.filepath)
    if camera is not None:
        ov.set(scene, "camera", camera)


def render_data_passes(scene, view_layer, frames, entities, cameras, camera, tmpdir, unit_scale, progress=None,
                       is_cancelled=None):
    """Depth and object index of every frame in ``frames`` (Blender frame numbers).

    entities: objects, entity id = position + 1 (others get index 0); cameras: every camera object the shot uses
    (their depth of field is switched off); camera: the export's fixed camera or None (scene camera per frame).
    Returns depth (F, H, W) float32 planar camera z in metres (Blender units × ``unit_scale``), ``inf`` where no
    surface is hit, and
    instance_mask (F, H, W) uint8 entity id per pixel (0 background); row 0 is the top of the image.
    """
    with Overrides() as ov:
        _plain_output(ov, scene, camera)
        render, cycles = scene.render, scene.cycles
        ov.set(render, "engine", "CYCLES")
        ov.set(cycles, "device", "CPU")
        ov.set(cycles, "samples", 1)
        ov.set(cycles, "use_adaptive_sampling", False)
        ov.set(cycles, "use_denoising", False)
        ov.set(cycles, "max_bounces", 0)
        ov.set(cycles, "pixel_filter_type", "BOX")
        ov.set(cycles, "filter_width", 0.01)
        ov.set(render, "use_motion_blur", False)
        ov.set(render, "use_compositing", False)
        ov.set(render, "use_persistent_data", True)  # keep the scene in Cycles between frames
        ov.set(view_layer, "use_pass_z", True)
        ov.set(view_layer, "use_pass_object_index", True)
        image = render.image_settings
        ov.keep(image, "color_depth", "color_mode")  # a format change resets them
        compat.set_image_format(image, "OPEN_EXR_MULTILAYER", ov.set)
        ov.set(image, "color_depth", "32")
        ov.set(image, "exr_codec", "NONE")
        for cam in cameras:
            ov.set(cam.data.dof, "use_dof", False)
        ids = {obj.as_pointer(): i + 1 for i, obj in enumerate(entities)}
        for obj in scene.objects:
            ov.set(obj, "pass_index", ids.get(obj.as_pointer(), 0))
        depth, mask = [], []
        for i, frame in enumerate(frames):
            _check(is_cancelled)
            path = os.path.join(tmpdir, f"data_{i:05d}")
            _render_frame(scene, view_layer, frame, camera, path)
            with open(path + ".exr", "rb") as fh:
                channels = read_exr(fh.read())
            os.remove(path + ".exr")
            z = find_pass(channels, compat.DEPTH_PASS_NAMES, "Z")
            z = z * np.float32(unit_scale)
            z[z >= BACKGROUND_DEPTH * unit_scale] = np.inf
            depth.append(z)
            mask.append(np.rint(find_pass(channels, compat.OBJECT_INDEX_PASS_NAMES, "X")).astype(np.uint8))
            if progress is not None:
                progress(i + 1, len(frames))
    return np.stack(depth), np.stack(mask)


def render_beauty(scene, view_layer, shots, cameras, camera, tmpdir, warnings, progress=None, is_cancelled=None):
    """Beauty renders with the scene's engine and settings, as 8-bit RGB PNG bytes.

    shots: list of (Blender frame number, file name). In background mode EEVEE needs a GPU context that headless
    machines lack (minutes per frame on a software rasteriser, or a failure), so it is replaced by Cycles, capped at
    32 samples, with a message appended to ``warnings``; an engine whose render raises is replaced the same way.
    Returns {file name: PNG bytes} and the engine id used.
    """
    out = {}
    with Overrides() as ov:
        _plain_output(ov, scene, camera)
        image = scene.render.image_settings
        ov.keep(image, "color_depth", "color_mode")  # a format change resets them
        compat.set_image_format(image, "PNG", ov.set)
        ov.set(image, "color_mode", "RGB")
        ov.set(image, "color_depth", "8")
        engine = scene.render.engine
        if engine in compat.EEVEE_ENGINES and bpy.app.background:
            _fall_back_to_cycles(ov, scene, warnings, f"{engine} cannot render reliably in background mode")
        for i, (frame, name) in enumerate(shots):
            _check(is_cancelled)
            path = os.path.join(tmpdir, f"beauty_{i:05d}")
            try:
                _render_frame(scene, view_layer, frame, camera, path)
            except RuntimeError as exc:
                if scene.render.engine == "CYCLES":
                    raise
                _fall_back_to_cycles(ov, scene, warnings, f"{scene.render.engine} failed to render ({exc})")
                _render_frame(scene, view_layer, frame, camera, path)
            with open(path + ".png", "rb") as fh:
                out[name] = fh.read()
            os.remove(path + ".png")
            if progress is not None:
                progress(i + 1, len(shots))
        engine = scene.render.engine
    return out, engine


def _fall_back_to_cycles(ov, scene, warnings, why):
    ov.set(scene.render, "engine", "CYCLES")
    ov.set(scene.cycles, "samples", min(scene.cycles.samples, 32))
    warnings.append(f"Beauty frames rendered with Cycles at {scene.cycles.samples} samples: {why}. "
                    "Switch Render Properties › Render Engine to Cycles to choose its settings yourself.")
