"""Paired A/B of the numeric export: a base git revision against the working tree, in one process, on the standard shot.

    python bench/export_ab.py [--base HEAD] [--rounds 400] [--frames 49]

Why paired: this machine's speed drifts by ±5 % between runs of ``bench/export.py`` (its median ratio to the bare loop
went from 1.92 to 2.09 within an hour, across a change that made the export faster), which hides any single change
under ~100 µs. Here each round
runs a bare ``frame_set`` loop before each of the two exports (so both start from the same cache state: evicted by
the loop, as in a real export), in alternating order, and the figure is the median of the per-round ratios
``tree / base``, with a bootstrap 95 % interval. Two copies of the same tree (``--base`` at the working tree's own
commit, nothing changed) read 0.993, 1.000 and 1.005 in three runs of 400 rounds: about ±30 µs on a 4 ms export, so
trust a change of 50 µs or more, or one that keeps its sign over several runs.

The base revision's ``addon`` package is extracted with ``git archive`` into a temporary folder and imported under
another name (its export modules use relative imports only).
"""

import argparse
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]


def extract_base(rev, into):
    """Extract ``addon/`` at git revision ``rev`` as the package ``base_addon`` under ``into``; returns its path."""
    archive = Path(into) / "base.tar"
    with open(archive, "wb") as fh:
        subprocess.run(["git", "-C", str(ROOT), "archive", rev, "addon"], stdout=fh, check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(into, filter="data")
    return (Path(into) / "addon").rename(Path(into) / "base_addon")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="HEAD", help="git revision to compare the working tree against")
    parser.add_argument("--rounds", type=int, default=400)
    parser.add_argument("--frames", type=int, default=49)
    args = parser.parse_args()

    import bpy
    import numpy as np
    from support.scenes import build_standard_shot

    with tempfile.TemporaryDirectory() as tmp:
        extract_base(args.base, tmp)
        sys.path.insert(0, tmp)
        from base_addon.export import exporter as base_exporter
        from base_addon.export import sampling as base_sampling

        from addon.export import exporter, sampling
        from addon.export.entities import explicit_entities

        bpy.ops.wm.read_homefile(use_empty=True)
        scene = build_standard_shot(720, 480, args.frames)
        frames = np.arange(scene.frame_start, scene.frame_end + 1, dtype=np.int32)
        entities = explicit_entities(scene)
        depth = np.full((len(frames), 480, 720), np.inf, np.float32)
        rendered = depth, np.zeros(depth.shape, np.uint8)
        metas = [{"name": obj.name} for obj in entities]

        def numeric(exp, smp):
            return lambda: exp._arrays(scene, frames, smp.sample(scene, frames, entities), rendered, [], metas)

        runs = {"base": numeric(base_exporter, base_sampling), "tree": numeric(exporter, sampling)}
        base_arrays, tree_arrays = runs["base"](), runs["tree"]()
        differ = sorted(k for k in base_arrays.keys() | tree_arrays.keys()
                        if k not in base_arrays or k not in tree_arrays
                        or base_arrays[k].shape != tree_arrays[k].shape
                        or not np.allclose(base_arrays[k], tree_arrays[k], atol=1e-3))
        frame_list = frames.tolist()
        pairs, loops, ratios = [], [], {"base": [], "tree": []}
        for r in range(args.rounds):
            took = {}
            for name in (("base", "tree") if r % 2 else ("tree", "base")):
                start = time.perf_counter()
                for frame in frame_list:
                    scene.frame_set(frame)
                loop = time.perf_counter() - start
                start = time.perf_counter()
                runs[name]()
                took[name] = time.perf_counter() - start
                ratios[name].append(took[name] / loop)
                loops.append(loop)
            pairs.append(took["tree"] / took["base"])

    median = statistics.median
    q1, _, q3 = statistics.quantiles(pairs, n=4)
    resampled = np.median(np.random.default_rng(0).choice(pairs, (2000, len(pairs))), axis=1)
    low, high = np.percentile(resampled, [2.5, 97.5])
    base_ms = median(ratios["base"]) * median(loops) * 1e3
    print(f"standard shot, {len(frames)} frames, bpy {bpy.app.version_string}; base {args.base} vs working tree, "
          f"{args.rounds} paired rounds")
    print(f"bare frame_set loop {median(loops) * 1e3:.3f} ms; export / loop: base {median(ratios['base']):.3f}, "
          f"tree {median(ratios['tree']):.3f}")
    print(f"tree / base: median {median(pairs):.4f} (95 % interval {low:.4f}-{high:.4f}; quartiles {q1:.3f}-{q3:.3f}), "
          f"about {(median(pairs) - 1) * base_ms * 1e3:+.0f} us per export")
    if differ:
        print(f"arrays missing on one side or differing by more than 1e-3: {', '.join(differ)}")


if __name__ == "__main__":
    main()
