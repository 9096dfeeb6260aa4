"""Child side of the background export: open a .blend, export a bundle, report in protocol lines (see :mod:`.process`).

Runs as a script, in either of:

    blender -b --python-exit-code 1 --python addon/export/runner.py -- BLEND -o shot.zip [export options]
    python addon/export/runner.py BLEND -o shot.zip [export options]      # a Python with the bpy module

It opens BLEND itself in both cases (``--autoexec`` allows its Python drivers, as the artist's session did), imports
the export from the extension folder it lives in and registers nothing: the export only reads the scene.
Exit code 0 on success, 1 on an export error (its message in an ``error`` line), 2 on bad arguments.
"""

import argparse
import json
import sys
import traceback
from pathlib import Path

EXTENSION_ROOT = Path(__file__).resolve().parents[2]
PREFIX = "TRAJPLATE "  # keep equal to process.PREFIX (this script cannot import the package before sys.path is set)


def emit(**message):
    print(PREFIX + json.dumps(message), flush=True)


def main(argv):
    sys.path.insert(0, str(EXTENSION_ROOT))
    import bpy

    from addon.export.cli import add_export_arguments, export_options
    from addon.export.errors import ExportError
    from addon.export.exporter import export_shot

    parser = argparse.ArgumentParser(prog="runner.py", description="Export a .blend as a TrajPlate shot bundle.")
    parser.add_argument("blend", help="the .blend file to open")
    parser.add_argument("--autoexec", action="store_true", help="allow the file's Python drivers and scripts")
    add_export_arguments(parser)
    args = parser.parse_args(argv)
    try:
        bpy.ops.wm.open_mainfile(filepath=args.blend, load_ui=False, use_scripts=args.autoexec)
    except RuntimeError as exc:
        emit(error=f"Could not open the scene snapshot '{args.blend}': {exc}")
        return 1
    scene = bpy.data.scenes.get(args.scene) if args.scene else bpy.context.scene
    if scene is None:
        emit(error=f"No scene named '{args.scene}' in the file; scenes: {', '.join(bpy.data.scenes.keys())}.")
        return 1
    try:
        result = export_shot(args.output, scene, export_options(args),
                             progress=lambda done, total, stage: emit(progress=[done, total, stage]))
    except ExportError as exc:
        emit(error=str(exc))
        return 1
    except Exception as exc:  # the parent shows one line; the traceback goes to its console
        traceback.print_exc(file=sys.stdout)
        emit(error=f"Unexpected error in the export: {exc}")
        return 1
    for warning in result.warnings:
        emit(warning=warning)
    emit(done={"path": str(result.path), "frames": result.frame_count, "entities": result.entity_names})
    return 0


def _script_argv():
    """Arguments after ``--`` inside Blender (its own options come first), else everything after the script."""
    return sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else sys.argv[1:]


if __name__ == "__main__":
    sys.exit(main(_script_argv()))
