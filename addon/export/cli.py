"""Command line of the export: ``blender -b scene.blend --command trajplate export -o shot.zip [options]``.

The same arguments serve ``scripts/export_shot.py`` (a Python with the bpy module). No bpy import at module level
beyond what the exporter needs, so argument parsing is testable on its own.
"""

import argparse
import sys

from .errors import ExportError
from .exporter import ExportOptions, export_shot


def frame_range(text):
    """'A:B' or 'A:B:STEP' (inclusive Blender frames, negatives allowed) -> (A, B, STEP)."""
    parts = text.split(":")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        values = []
    if len(values) not in (2, 3):
        raise argparse.ArgumentTypeError(f"--frames {text!r}: write A:B or A:B:STEP, e.g. 1:49 or -10:40:2")
    return (*values, 1) if len(values) == 2 else tuple(values)


def add_export_arguments(parser):
    parser.add_argument("-o", "--output", required=True, help="bundle path to write (.zip)")
    parser.add_argument("--camera", default="", help="camera object for every frame (default: the scene camera)")
    parser.add_argument("--no-renders", action="store_true", help="skip depth, masks and the first-frame render")
    parser.add_argument("--rgb-frames", action="store_true", help="also render every frame to frames/rgb/")
    parser.add_argument("--frames", type=frame_range, help="A:B[:STEP] instead of the scene's frame range")
    parser.add_argument("--scene", default="", help="scene name (default: the active scene)")
    parser.add_argument("--blend-file", default=None,
                        help="the .blend recorded in the bundle (default: the open file; '' for an unsaved one), "
                             "for exports of a saved copy")


def export_options(args):
    """ExportOptions from arguments parsed by a parser given :func:`add_export_arguments`."""
    return ExportOptions(
        include_renders=not args.no_renders, include_rgb_frames=args.rgb_frames,
        frame_range=args.frames, camera=args.camera, blend_file=args.blend_file,
    )


def run_export(args, scene=None):
    """Export with parsed ``args``; prints progress, warnings and errors; returns the process exit code."""
    import bpy

    if args.scene:
        scene = bpy.data.scenes.get(args.scene)
        if scene is None:
            print(f"error: no scene named '{args.scene}'; scenes: {', '.join(bpy.data.scenes.keys())}", file=sys.stderr)
            return 2
    options = export_options(args)
    last_stage = []

    def progress(done, total, stage):
        if not last_stage or last_stage[-1] != stage:
            last_stage.append(stage)
            print(f"[{done}/{total}] {stage}", file=sys.stderr, flush=True)

    try:
        result = export_shot(args.output, scene, options, progress)
    except ExportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(f"wrote {result.path} ({result.frame_count} frames, entities: {', '.join(result.entity_names)})")
    return 0


def cli_handler(argv):
    """Handler of ``--command trajplate``; subcommand ``export``."""
    parser = argparse.ArgumentParser(prog="blender --command trajplate", description="TrajPlate commands")
    sub = parser.add_subparsers(dest="command", required=True)
    add_export_arguments(sub.add_parser("export", help="export the open scene as a shot bundle"))
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits on --help and on bad arguments; Blender wants a return code
        return int(exc.code or 0)
    return run_export(args)
