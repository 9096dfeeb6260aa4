"""Main-thread cost of the add-on while jobs run: every ``session.tick()`` is timed (what the timer calls).

Runs the real loop headless: the add-on registered in bpy, the standard test scene, a real ``trajplate serve``
subprocess with the test-only ``test-loop`` pipeline, N variations. Prints the main-thread cost of the Generate
click (the operator, which saves a snapshot of the file; the snapshot alone is timed too), then every tick split
into ticks while the export runs (in a child process) and ticks while the jobs run (upload, progress, download,
take import), as ratios to the 50 ms budget and to an idle tick measured in the same process.

    python bench/ui_tick.py [--variations 3] [--steps 30] [--step-ms 20] [--width 96 --height 64 --frames 24]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BUDGET_S = 0.050


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variations", type=int, default=3)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--step-ms", type=float, default=20.0)
    ap.add_argument("--width", type=int, default=96)
    ap.add_argument("--height", type=int, default=64)
    ap.add_argument("--frames", type=int, default=24)
    args = ap.parse_args()
    sys.path[:0] = [str(REPO), str(REPO / "tests"), str(REPO / "tests" / "addon")]
    import bpy
    from fixtures_loop import live_backend
    from support.scenes import build_standard_shot

    import addon

    bpy.ops.wm.read_homefile(use_empty=True)
    addon.register()
    entry = bpy.context.preferences.addons.new()
    entry.module = addon.prefs.ADDON_ID
    server = live_backend.__wrapped__(_TmpFactory())
    try:
        url = next(server)
        from addon.operators import session

        prefs = addon.prefs.get()
        prefs.backend_url, prefs.poll_interval = url, 0.1
        scene = build_standard_shot(args.width, args.height, args.frames)
        s = scene.trajplate
        s.pipeline, s.steps, s.variations, s.options = "test-loop", args.steps, args.variations, \
            f'{{"step_ms": {args.step_ms}}}'
        folder = Path(tempfile.mkdtemp())
        bpy.ops.wm.save_as_mainfile(filepath=str(folder / "bench.blend"))
        from addon.export.background import snapshot

        copies = []
        for i in range(5):
            t0 = time.perf_counter()
            snapshot(folder / f"copy{i}.blend")
            copies.append(time.perf_counter() - t0)

        idle = []
        for _ in range(200):
            t0 = time.perf_counter()
            session.tick()
            idle.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        bpy.ops.trajplate.generate()
        click = time.perf_counter() - t0
        export, running = [], []
        while session.manager.busy:
            exporting = any(j.state == "exporting" for j in session.manager.jobs)
            t0 = time.perf_counter()
            session.tick()
            (export if exporting else running).append(time.perf_counter() - t0)
            time.sleep(0.01)
        states = [j.state for j in session.manager.jobs]
        idle_ms = statistics.median(idle) * 1e3
        print(f"jobs: {states}")
        print(f"idle tick: median {idle_ms:.3f} ms over {len(idle)}")
        print(f"scene: {args.width}x{args.height}, {args.frames} frames, bpy {bpy.app.version_string}")
        print(f"snapshot (save_as_mainfile copy): median {statistics.median(copies) * 1e3:.2f} ms, "
              f"max {max(copies) * 1e3:.2f} ms over {len(copies)}")
        print(f"Generate click (operator, snapshot included): {click * 1e3:.1f} ms ({click / BUDGET_S:.2f}x budget)")
        print(f"ticks while the export runs (child process): {len(export)}, median "
              f"{statistics.median(export) * 1e3:.3f} ms, max {max(export) * 1e3:.2f} ms "
              f"({max(export) / BUDGET_S:.3f}x budget)")
        p99 = sorted(running)[int(0.99 * (len(running) - 1))]
        print(f"ticks while jobs run: {len(running)}, median {statistics.median(running) * 1e3:.3f} ms, "
              f"p99 {p99 * 1e3:.2f} ms, max {max(running) * 1e3:.2f} ms")
        print(f"ratios: max/budget {max(running) / BUDGET_S:.3f}, median/idle "
              f"{statistics.median(running) * 1e3 / idle_ms:.2f}, over budget: "
              f"{sum(t > BUDGET_S for t in running)} of {len(running)}")
        return 0 if all(s == "succeeded" for s in states) else 1
    finally:
        server.close()
        session.manager.shutdown()
        bpy.context.preferences.addons.remove(entry)
        addon.unregister()


class _TmpFactory:
    """Stands in for pytest's tmp_path_factory."""

    def mktemp(self, name):
        return Path(tempfile.mkdtemp(prefix=name))


if __name__ == "__main__":
    sys.exit(main())
