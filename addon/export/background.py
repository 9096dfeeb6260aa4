"""Main-thread half of the background export: snapshot the open file, build the child's command line.

The only main-thread work is ``save_as_mainfile(copy=True)``: a copy of the current state, unsaved changes included,
that leaves the artist's file path and its unsaved flag alone (about 1 ms for the standard test scene; it grows with
the data, ~20 ms for a 130k-vertex mesh). Everything the export reads (entity custom properties, prompts, camera,
frame range, render settings) is in the copy. The child then runs the same :func:`.exporter.export_shot` as the
operator, in a background Blender (``bpy.app.binary_path``) or, in the bpy module where that path is empty, in this
Python (``sys.executable``, which can import bpy).
"""

import sys
from pathlib import Path

import bpy

from . import runner
from .exporter import ExportOptions
from .process import ExportProcess


def snapshot(path):
    """Write a copy of the open file's current state to ``path`` (.blend); relative paths are remapped to it."""
    bpy.ops.wm.save_as_mainfile(filepath=str(path), copy=True, relative_remap=True, compress=False)
    return Path(path)


def command(blend, bundle, scene_name, options):
    """argv of a child process that exports scene ``scene_name`` of ``blend`` to ``bundle`` with ``options``.

    Python drivers run in the child exactly when this session allows them (``bpy.app.autoexec_fail``).
    """
    script = [str(Path(runner.__file__).resolve())]
    binary = bpy.app.binary_path
    if binary:
        prefix = [binary, "--background", "--python-exit-code", "1", "--python", *script, "--"]
    else:
        prefix = [sys.executable, "-P", *script]  # -P: not the script's folder on sys.path (its operator.py)
    # "--name=value": values (scene names, paths) may start with "-".
    args = [str(blend), f"--output={bundle}", f"--scene={scene_name}", f"--blend-file={options.blend_path()}"]
    if not bpy.app.autoexec_fail:
        args.append("--autoexec")
    if not options.include_renders:
        args.append("--no-renders")
    if options.include_rgb_frames:
        args.append("--rgb-frames")
    if options.frame_range is not None:
        args.append("--frames=" + ":".join(str(int(v)) for v in options.frame_range))
    if options.camera:
        args.append(f"--camera={options.camera}")
    return prefix + args


def background_export(scene, bundle, options=None):
    """An :class:`.process.ExportProcess` (not started) that exports ``scene`` as it is now to ``bundle``.

    The snapshot is written next to ``bundle`` (give the bundle a folder of its own) and deleted when the child ends.
    Raises RuntimeError when the snapshot cannot be written (disk full, folder not writable).
    """
    options = options or ExportOptions()
    bundle = Path(bundle)
    blend = snapshot(bundle.with_name(f".{bundle.stem}-snapshot.blend"))
    return ExportProcess(command(blend, bundle, scene.name, options), bundle, cleanup=(blend,))
