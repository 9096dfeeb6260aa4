"""The redirect camera: a second camera's OpenCV w2c and K at every exported frame, for camera-redirect pipelines.

Computed by the same code as the shot camera's (:func:`.sampling.sample`'s frame loop with the redirect camera as
the camera, then :func:`.camera.camera_arrays`), so a redirect camera that *is* the shot camera gives the bundle's
``camera_w2c_opencv`` and ``intrinsics`` exactly. On Generate it runs in the export's child process right after the
export (:mod:`.redirect_runner`): the frame loop never runs on Blender's main thread. The result lies beside the
bundle as ``<bundle stem>.redirect.npz``.
"""

from pathlib import Path

import numpy as np

from . import runner
from .background import command, snapshot
from .camera import camera_arrays, check_perspective, rigid
from .process import ExportProcess
from .sampling import sample


def redirect_path(bundle):
    """Where the redirect camera of ``bundle`` is written: ``<bundle stem>.redirect.npz`` beside it."""
    bundle = Path(bundle)
    return bundle.with_name(f"{bundle.stem}.redirect.npz")


def redirect_camera(scene, frames, camera):
    """The redirect camera over Blender frames ``frames`` ((F,) ints, the exported frames).

    Returns ``{"frame_numbers": (F,) int32, "camera_w2c_opencv": (F, 4, 4) float64 world-to-camera, OpenCV axes,
    metres, "intrinsics": (F, 3, 3) float64 K in pixels at the scene's output resolution, pixel-corner origin}``.
    One ``frame_set`` per frame (the current frame is restored). Raises ExportError naming the camera when it is not
    a perspective camera.
    """
    check_perspective(camera)
    saved = scene.frame_current, scene.frame_subframe
    try:
        samples = sample(scene, np.asarray(frames), [], camera)
    finally:
        scene.frame_set(saved[0], subframe=saved[1])
    _, w2c, K = camera_arrays(rigid(samples.camera_world), samples, scene.render, scene.unit_settings.scale_length)
    return {"frame_numbers": np.asarray(frames, dtype=np.int32), "camera_w2c_opencv": w2c, "intrinsics": K}


def background_export(scene, bundle, options, camera_name):
    """Like :func:`.background.background_export`, and the child also writes the redirect camera ``camera_name`` at
    the exported frames to :func:`redirect_path` (the export fails, naming the camera, when it cannot)."""
    bundle = Path(bundle)
    blend = snapshot(bundle.with_name(f".{bundle.stem}-snapshot.blend"))
    argv = command(blend, bundle, scene.name, options)
    argv[argv.index(str(Path(runner.__file__).resolve()))] = str(Path(__file__).with_name("redirect_runner.py"))
    argv += [f"--redirect-camera={camera_name}", f"--redirect-output={redirect_path(bundle)}"]
    return ExportProcess(argv, bundle, cleanup=(blend,))
