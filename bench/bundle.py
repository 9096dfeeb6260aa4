"""Shot bundle compression choices: write / read seconds and sizes, as ratios against the layout we ship.

    python bench/bundle.py                       # synthetic 49-frame 720x480 shot, 3 entities, depth + masks
    python bench/bundle.py --from shot.zip       # the arrays of a real exported bundle
    python bench/bundle.py --width 1280 --height 720

Layouts compared (all read back with trajplate.shot.load_shot from bytes, as the job service does; "upload" posts
the bundle over a loopback socket to a stdlib HTTP server that runs load_shot on the body):
  shipped        addon/bundle.py: arrays.npz stored in the zip; inside, every array deflated at level 1
  depth-stored   as shipped, but depth stored (not deflated)
  level-6        as shipped, but deflate level 6 (np.savez_compressed)
  outer-deflate  np.savez (uncompressed npz) inside a deflated zip
  all-stored     nothing compressed
"""

from __future__ import annotations

import argparse
import http.server
import io
import json
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
import zipfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from support.synthetic import png, synthetic_parts  # noqa: E402
from trajplate.shot import load_shot  # noqa: E402

from addon.bundle import write_bundle  # noqa: E402


def _npz(arrays: dict, level_of) -> bytes:
    """arrays.npz with member ``name`` deflated at ``level_of(name)``, or stored where that is None."""
    npz = io.BytesIO()
    with zipfile.ZipFile(npz, "w") as archive:
        for name, array in arrays.items():
            npy = io.BytesIO()
            np.lib.format.write_array(npy, array, allow_pickle=False)
            level = level_of(name)
            method = zipfile.ZIP_STORED if level is None else zipfile.ZIP_DEFLATED
            archive.writestr(name + ".npy", npy.getbuffer(), method, level)
    return npz.getvalue()


def _hand_made(meta: dict, arrays: dict, frames: dict, *, outer: int, level_of) -> bytes:
    bundle = io.BytesIO()
    with zipfile.ZipFile(bundle, "w") as archive:
        archive.writestr("shot.json", json.dumps({**meta, "frames": sorted(frames)}), zipfile.ZIP_DEFLATED)
        archive.writestr("arrays.npz", _npz(arrays, level_of), outer)
        for name, data in frames.items():
            archive.writestr("frames/" + name, data, zipfile.ZIP_STORED)
    return bundle.getvalue()


def _shipped(meta: dict, arrays: dict, frames: dict) -> bytes:
    with tempfile.TemporaryDirectory() as folder:
        return write_bundle(Path(folder) / "shot.zip", meta, arrays, frames).read_bytes()


STORED = zipfile.ZIP_STORED
LAYOUTS = {
    "shipped": _shipped,
    "depth-stored": lambda m, a, f: _hand_made(m, a, f, outer=STORED, level_of=lambda n: None if n == "depth" else 1),
    "level-6": lambda m, a, f: _hand_made(m, a, f, outer=STORED, level_of=lambda n: 6),
    "outer-deflate": lambda m, a, f: _hand_made(m, a, f, outer=zipfile.ZIP_DEFLATED, level_of=lambda n: None),
    "all-stored": lambda m, a, f: _hand_made(m, a, f, outer=STORED, level_of=lambda n: None),
}


class _LoadShotHandler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 (http.server's naming)
        shot = load_shot(self.rfile.read(int(self.headers["Content-Length"])))
        body = shot.bundle_sha256.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def _upload(url: str, data: bytes) -> None:
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/zip"})
    with urllib.request.urlopen(request) as response:
        assert len(response.read()) == 64


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
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _LoadShotHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    rows = {}
    try:
        for name, layout in LAYOUTS.items():
            write_s, data = _timed(lambda layout=layout: layout(meta, arrays, frames), args.repeats)
            read_s, shot = _timed(lambda data=data: load_shot(data), args.repeats)
            assert np.array_equal(shot.depth, arrays["depth"]), name
            upload_s, _ = _timed(lambda data=data: _upload(url, data), args.repeats)
            rows[name] = (write_s, read_s, upload_s, len(data) / 1e6)
    finally:
        server.shutdown()
    print(f"{'layout':<14} {'write s':>8} {'read s':>8} {'upload s':>9} {'size MB':>8}   ratios to shipped")
    for name, row in rows.items():
        ratios = " ".join(f"{value / base:5.2f}" for value, base in zip(row, rows["shipped"], strict=True))
        print(f"{name:<14} {row[0]:8.3f} {row[1]:8.3f} {row[2]:9.3f} {row[3]:8.1f}   {ratios}")


if __name__ == "__main__":
    main()
