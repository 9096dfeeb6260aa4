"""Build a test scene with bpy and export it as a shot bundle, in its own process.

    python tests/support/make_bundle.py --scene standard --out X.zip [--width W --height H --frames N]
                                        [--no-renders] [--rgb-frames]

Backend tests call this as a subprocess so bpy never loads into their process (see tests/conftest.py).
"""

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

SCENES = ("standard",)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scene", choices=SCENES, default="standard")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--width", type=int, default=720)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--frames", type=int, default=49)
    parser.add_argument("--no-renders", action="store_true")
    parser.add_argument("--rgb-frames", action="store_true")
    args = parser.parse_args(argv)

    import bpy

    import addon
    from addon.export import ExportOptions, export_shot
    from support.scenes import build_standard_shot

    bpy.ops.wm.read_homefile(use_empty=True)
    scene = build_standard_shot(args.width, args.height, args.frames)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    addon.register()
    try:
        options = ExportOptions(include_renders=not args.no_renders, include_rgb_frames=args.rgb_frames)
        result = export_shot(args.out, scene, options)
    finally:
        addon.unregister()  # a class left registered hangs bpy 4.5 at exit
    print(result.path)


if __name__ == "__main__":
    main()
