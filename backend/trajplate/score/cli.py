"""``trajplate score TAKE.mp4 BUNDLE.zip``: print the adherence table and write the full result as JSON.

The time map (which Blender frame each take frame shows) comes, in order of preference, from the job's
``metadata.json`` (``--metadata``: its ``shot_frames``, exact), from the pipeline preset (``--pipeline``: its
native frame count spread evenly over the shot's exported frames, fractional where they fall between two), or,
when the take has exactly as many frames as the shot, 1:1.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np


def time_map(num_take_frames: int, frame_numbers: np.ndarray, *, metadata: Path | None = None,
             pipeline: str | None = None) -> np.ndarray:
    """(T,) float64 Blender frame of each take frame; see the module docstring for the sources.

    Raises ValueError naming the missing source or the bad file/field.
    """
    frames = np.asarray(frame_numbers, dtype=np.float64)
    if metadata is not None:
        try:
            data = json.loads(Path(metadata).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"--metadata {metadata}: cannot read it as JSON ({exc})") from exc
        if not isinstance(data, dict) or not isinstance(data.get("shot_frames"), list):
            raise ValueError(f"--metadata {metadata}: no 'shot_frames' list (is this a job's metadata.json?)")
        return np.asarray(data["shot_frames"], dtype=np.float64)
    if pipeline is not None:
        from ..presets import get_preset

        n = get_preset(pipeline).native.frames
        return np.interp(np.linspace(0, len(frames) - 1, n), np.arange(len(frames)), frames)
    if num_take_frames == len(frames):
        return frames
    raise ValueError(
        f"the take has {num_take_frames} frames and the shot {len(frames)}: pass --metadata (the job's "
        "metadata.json) or --pipeline so the score knows which shot frame each take frame shows"
    )


def cmd_score(args: argparse.Namespace) -> int:
    """Exit codes: 0 scored (possibly partially: see the warnings), 2 unreadable input."""
    import av

    from ..presets import PresetError
    from ..shot import BundleError, load_shot
    from ..video import read_mp4
    from . import ScoreInputError, calibrate, format_table, score_take
    from .report import jsonable

    try:
        shot = load_shot(args.bundle)
        take = read_mp4(args.take).frames
        shot_frames = time_map(len(take), shot.frame_numbers, metadata=args.metadata, pipeline=args.pipeline)
        calibration = calibrate(shot, shot_frames) if args.calibrate else None
        result = score_take(take, shot, shot_frames, calibration=calibration)
    except (BundleError, ScoreInputError, PresetError, ValueError, OSError, av.error.FFmpegError) as exc:
        print(f"trajplate score: {exc}", file=sys.stderr)
        return 2
    out = args.json or args.take.with_suffix(".score.json")
    out.write_text(json.dumps(jsonable(result), indent=1), encoding="utf-8")
    print(format_table(result))
    for warning in (calibration or {}).get("warnings", []):
        print(f"warning: {warning}")
    print(f"wrote {out}")
    return 0


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``score`` on the ``trajplate`` command's subparsers."""
    p = subparsers.add_parser("score", help="measure how well a take follows its shot (adherence score)",
                              description="Score how well a take follows its shot: print a table, write the full result as JSON.")
    p.add_argument("take", type=Path, help="the take (MP4)")
    p.add_argument("bundle", type=Path, help="the shot bundle it was generated from")
    p.add_argument("--metadata", type=Path, help="the job's metadata.json (exact time map)")
    p.add_argument("--pipeline", "-p", help="pipeline id: time map from its preset's native frame count")
    p.add_argument("--calibrate", action="store_true",
                   help="also score the oracle (needs per-frame renders) and the frozen take; adds normalised scores")
    p.add_argument("--json", type=Path, help="where to write the full result (default: TAKE.score.json)")
    p.set_defaults(func=cmd_score)
    return p
