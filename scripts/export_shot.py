"""Export a .blend file as a TrajPlate shot bundle, in a Python with the bpy module (no Blender binary needed).

    python scripts/export_shot.py scene.blend -o out/shot.zip [--camera NAME] [--no-renders] [--rgb-frames]
                                  [--frames A:B[:STEP]] [--scene NAME]

The same export as ``blender -b scene.blend --command trajplate export ...``; exit code 1 on an export error.
"""

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv=None):
    import bpy

    import addon
    from addon.export.cli import add_export_arguments, run_export

    parser = argparse.ArgumentParser(description="Export a .blend file as a TrajPlate shot bundle.")
    parser.add_argument("blend", type=Path, help="the .blend file to export")
    add_export_arguments(parser)
    args = parser.parse_args(argv)
    if not args.blend.is_file():
        parser.error(f"{args.blend} is not a file")
    bpy.ops.wm.open_mainfile(filepath=str(args.blend.resolve()))
    args.output = Path(args.output).resolve()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    addon.register()
    try:
        return run_export(args)
    finally:
        addon.unregister()  # a class left registered hangs bpy 4.5 at exit


if __name__ == "__main__":
    sys.exit(main())
