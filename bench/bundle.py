"""Shot bundle compression choices: write / read seconds and sizes, as ratios against the layout we ship.

    python bench/bundle.py                       # synthetic 49-frame 720x480 shot, 3 entities, depth + masks
    python bench/bundle.py --from shot.zip       # the arrays of a real exported bundle
    python bench/bundle.py --width 1280 --height 720

Layouts compared (all read back with trajplate.shot.load_shot from bytes, as the job service does):
  shipped        addon/bundle.py: arrays.npz stored in the zip; inside, depth stored, everything else deflated
  outer-deflate  np.savez (uncompressed npz) inside a deflated zip
  npz-deflate    np.savez_compressed (every array deflated) stored in the zip
  all-stored     nothing compressed
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "backend")]

from test_shot_synthetic import png, synthetic_parts  # noqa: E402
from trajplate.shot import load_shot  # noqa: E402

from addon.bundle import write_bundle  # noqa: E402


def _hand_made(meta: dict, arrays: dict, frames: dict, *, outer: int, npz_compressed: bool) -> bytes:
    npz = io.BytesIO()
    (np.savez_compressed if npz_compressed else np.savez)(npz, **arrays)
    bundle = io.BytesIO()
    with zipfile.ZipFile(bundle, "w") as archive:
        archive.writestr("shot.json", json.dumps({**meta, "frames": sorted(frames)}), zipfile.ZIP_DEFLATED)
        archive.writestr("arrays.npz", npz.getbuffer(), outer)
        for name, data in frames.items():
            archive.writestr("frames/" + name, data, zipfile.ZIP_STORED)
    return bundle.getvalue()


def _shipped(meta: dict, arrays: dict, frames: dict) -> bytes:
    with tempfile.TemporaryDirectory() as folder:
        return write_bundle(Path(folder) / "shot.zip", meta, arrays, frames).read_bytes()


LAYOUTS = {
    "shipped": _shipped,
    "outer-deflate": lambda m, a, f: _hand_made(m, a, f, outer=zipfile.ZIP_DEFLATED, npz_compressed=False),
    "npz-deflate": lambda m, a, f: _hand_made(m, a, f, outer=zipfile.ZIP_STORED, npz_compressed=True),
    "all-stored": lambda m, a, f: _hand_made(m, a, f, outer=zipfile.ZIP_STORED, npz_compressed=False),
}


def _timed(function, repeats: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--from", dest="source", type=Path, help="take the shot from this exported bundle")
    parser.add_argument("--width", type=int, default=720)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--frames", type=int, default=49)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)

    if args.source:
        shot = load_shot(args.source)
        meta = shot.meta.model_dump(mode="json", exclude={"frames"})
        arrays, frames = shot.arrays(), {"first_frame.png": png(shot.first_frame)}
        label = f"{args.source.name}"
    else:
        meta, arrays, first_frame = synthetic_parts(args.frames, args.width, args.height, 3)
        frames = {"first_frame.png": png(first_frame)}
        label = "synthetic"
    raw_mb = sum(a.nbytes for a in arrays.values()) / 1e6
    print(
        f"{label}: {meta['resolution'][0]}x{meta['resolution'][1]}, {meta['frame_count']} frames, "
        f"{len(meta['entities'])} entities; arrays {raw_mb:.1f} MB raw "
        f"(depth {arrays['depth'].nbytes / 1e6:.1f} MB, mask {arrays['instance_mask'].nbytes / 1e6:.1f} MB)"
    )
    rows = {}
    for name, layout in LAYOUTS.items():
        write_s, data = _timed(lambda layout=layout: layout(meta, arrays, frames), args.repeats)
        read_s, shot = _timed(lambda data=data: load_shot(data), args.repeats)
        assert np.array_equal(shot.depth, arrays["depth"]) and np.array_equal(
            shot.instance_mask, arrays["instance_mask"]
        )
        rows[name] = (write_s, read_s, len(data) / 1e6)
    base_write, base_read, base_size = rows["shipped"]
    print(f"{'layout':<14} {'write s':>8} {'read s':>8} {'size MB':>8}   {'write x':>7} {'read x':>7} {'size x':>7}")
    for name, (write_s, read_s, size) in rows.items():
        print(
            f"{name:<14} {write_s:8.3f} {read_s:8.3f} {size:8.1f}   {write_s / base_write:7.2f} "
            f"{read_s / base_read:7.2f} {size / base_size:7.2f}"
        )


if __name__ == "__main__":
    main()
