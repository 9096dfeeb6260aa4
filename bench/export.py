"""Cost of the shot export against bare Blender work on the same frames (standard shot: 3 entities, 49 frames, 720×480).

    python bench/export.py [--frames 49] [--width 720 --height 480] [--repeat 15] [--skip-renders]
    python bench/export.py --blend ../shared/scenes/03_all_animations.blend --skip-renders   # a real scene

Prints absolute seconds and ratios, all measured in this process:
- numeric export (frame loop + every array, visibility from renders) / a bare ``frame_set`` loop      goal <= 2.0
- numeric export with renders off (visibility by ray casts) / the same bare loop                       (reported)
- depth + mask renders (incl. reading the EXRs) / a bare Cycles 1-sample animation render, same passes goal <= 1.3
The bare loop is the honest baseline: the same scene, the same frames, ``scene.frame_set`` only. The numeric runs
and the bare loop alternate, ``--repeat`` times each, so both see the same machine load (the CPU is shared); the
best and the median of each are printed, with ratios of bests and of medians.
"""

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]


def interleaved(fns, repeat):
    """{name: [seconds] * repeat}, running the functions of ``fns`` ({name: fn}) in turn, ``repeat`` rounds."""
    times = {name: [] for name in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return times


def bare_render(scene, view_layer, frames, tmp):
    """A plain Cycles animation render of the same passes with the same sampling settings (the baseline)."""
    from addon import compat
    from addon.export.overrides import Overrides

    with Overrides() as ov:
        render, cycles = scene.render, scene.cycles
        for owner, name, value in [
            (cycles, "samples", 1), (cycles, "use_adaptive_sampling", False), (cycles, "use_denoising", False),
            (cycles, "max_bounces", 0), (render, "use_persistent_data", True), (view_layer, "use_pass_z", True),
            (view_layer, "use_pass_object_index", True), (render, "filepath", os.path.join(tmp, "bare_")),
            (scene, "frame_start", int(frames[0])), (scene, "frame_end", int(frames[-1])),
        ]:
            ov.set(owner, name, value)
        ov.keep(render.image_settings, "color_depth", "color_mode")
        compat.set_image_format(render.image_settings, "OPEN_EXR_MULTILAYER", ov.set)
        ov.set(render.image_settings, "color_depth", "32")
        ov.set(render.image_settings, "exr_codec", "NONE")
        start = time.perf_counter()
        import bpy

        bpy.ops.render.render(animation=True, scene=scene.name, layer=view_layer.name)
        return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=49)
    parser.add_argument("--width", type=int, default=720)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--skip-renders", action="store_true")
    parser.add_argument("--blend", type=Path, help="a .blend to measure instead of the standard shot (its scene "
                        "range and entities as the export finds them; a camera is added where it has none)")
    args = parser.parse_args()

    import bpy
    import numpy as np
    from support.scenes import add_camera, build_standard_shot

    from addon.export import ExportOptions, build_shot
    from addon.export.entities import explicit_entities
    from addon.export.exporter import _arrays, _entities
    from addon.export.renders import render_data_passes
    from addon.export.sampling import sample

    if args.blend:
        bpy.ops.wm.open_mainfile(filepath=str(args.blend.resolve()))
        scene = bpy.context.scene
        if scene.camera is None:
            add_camera(scene, (0.0, -12.0, 4.0), (0.0, 0.0, 0.0))
        frames = np.arange(scene.frame_start, scene.frame_end + 1, scene.frame_step, dtype=np.int32)
        entities = _entities(scene, frames, None, lambda *_: None)
        label = args.blend.name
    else:
        bpy.ops.wm.read_homefile(use_empty=True)
        scene = build_standard_shot(args.width, args.height, args.frames)
        frames = np.arange(scene.frame_start, scene.frame_end + 1, dtype=np.int32)
        entities = explicit_entities(scene)
        label = "standard shot"
    view_layer = bpy.context.view_layer
    cameras = [scene.camera]
    width, height = scene.render.resolution_x, scene.render.resolution_y
    print(f"{label}: {len(entities)} entities, {len(frames)} frames, {width}x{height}, bpy {bpy.app.version_string}")

    def bare_loop():
        for frame in frames:
            scene.frame_set(int(frame))

    with tempfile.TemporaryDirectory() as tmp:
        rendered = None
        if not args.skip_renders:
            t_bare = bare_render(scene, view_layer, frames, tmp)
            start = time.perf_counter()
            rendered = render_data_passes(scene, view_layer, frames, entities, cameras, None, tmp, 1.0)
            t_ours = time.perf_counter() - start
        else:
            depth = np.full((len(frames), height, width), np.inf, np.float32)
            rendered = depth, np.zeros(depth.shape, np.uint8)

        def numeric():
            samples = sample(scene, frames, entities)
            _arrays(scene, frames, samples, rendered, [], [{"name": o.name} for o in entities])

        bare_loop()  # warm the depsgraph
        times = interleaved({
            "loop": bare_loop,
            "numeric": numeric,
            "raycast": lambda: build_shot(scene, ExportOptions(include_renders=False)),
        }, args.repeat)
    best = {name: min(t) for name, t in times.items()}
    median = {name: statistics.median(t) for name, t in times.items()}
    print(f"{args.repeat} interleaved runs each; seconds as best / median")
    print(f"bare frame_set loop            {best['loop']:8.4f} / {median['loop']:8.4f} s")
    for name, label, goal in [("numeric", "numeric export (renders on) ", "  (goal <= 2.0)"),
                              ("raycast", "numeric export (ray casts)  ", "")]:
        print(f"{label}   {best[name]:8.4f} / {median[name]:8.4f} s   ratio {best[name] / best['loop']:5.2f} / "
              f"{median[name] / median['loop']:5.2f}{goal}")
    if not args.skip_renders:
        print(f"bare Cycles 1-spp render       {t_bare:8.4f} s")
        print(f"depth + mask renders (ours)    {t_ours:8.4f} s   ratio {t_ours / t_bare:5.2f}  (goal <= 1.3)")


if __name__ == "__main__":
    main()
