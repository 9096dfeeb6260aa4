"""The adherence benchmark: calibrate every procedural shot and score any takes generated from it.

    python bench/adherence/run.py [--size 720x480x49] [--shots dolly_arc,...] [--takes DIR]

For each shot (built in headless Blender and cached, see ``dataset.py``) it scores the oracle (Blender's own
render of every frame: tracker + PnP noise) and the frozen take (first frame held: "ignored the control"),
and prints one markdown row per shot and take for ``docs/benchmarks.md``. ``--takes DIR`` adds every
``DIR/<shot>.<pipeline>.mp4`` with its job ``DIR/<shot>.<pipeline>.json`` (metadata.json, for the time map),
scored raw and normalised between the two calibration takes — on a GPU machine, generate them with
``trajplate run <bundle> -p <pipeline> -o DIR/<shot>.<pipeline>.mp4`` for the bundles this script prints.
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from trajplate.score import calibrate, score_take  # noqa: E402
from trajplate.score.cli import time_map  # noqa: E402
from trajplate.shot import load_shot  # noqa: E402
from trajplate.video import read_mp4  # noqa: E402

from bench.adherence.dataset import shot_bundle  # noqa: E402

MOTION_SHOTS = ("static_linear", "dolly_arc", "pan_crossing", "orbit_turn")
COLUMNS = ("camera_rot_deg", "camera_trans_m", "camera_ate_m", "entity_trans_m", "entity_rot_deg", "objmc_px",
           "box_iou", "first_frame_psnr", "flicker")


def _row(shot: str, take: str, values: dict, normalised: dict | None = None) -> str:
    cells = []
    for key in COLUMNS:
        v = values.get(key)
        text = "—" if v is None else f"{v:.3f}"
        n = (normalised or {}).get(key)
        cells.append(text if n is None else f"{text} ({n:.2f})")
    return f"| {shot} | {take} | " + " | ".join(cells) + " |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="720x480x49", help="WIDTHxHEIGHTxFRAMES")
    parser.add_argument("--shots", default=",".join(MOTION_SHOTS))
    parser.add_argument("--takes", type=Path, help="folder of <shot>.<pipeline>.mp4 takes (+ .json metadata)")
    args = parser.parse_args()
    width, height, frames = (int(v) for v in args.size.split("x"))
    print(f"size {width}x{height}, {frames} frames; raw (normalised: oracle 1, frozen 0)\n")
    print("| shot | take | " + " | ".join(COLUMNS) + " |")
    print("|---|---|" + "---|" * len(COLUMNS))
    for name in args.shots.split(","):
        bundle = shot_bundle(name, width, height, frames)
        shot = load_shot(bundle)
        shot_frames = shot.frame_numbers.astype(float)
        cal = calibrate(shot, shot_frames)
        print(_row(name, "oracle", cal["oracle"]))
        print(_row(name, "frozen", cal["frozen"]))
        for take in sorted(args.takes.glob(f"{name}.*.mp4")) if args.takes else []:
            video = read_mp4(take).frames
            meta = take.with_suffix(".json")
            tm = time_map(len(video), shot.frame_numbers, metadata=meta if meta.exists() else None,
                          pipeline=None if meta.exists() else take.stem.split(".", 1)[1])
            result = score_take(video, shot, tm, calibration=cal)
            print(_row(name, take.stem.split(".", 1)[1], result["summary"], result["normalised"]))
        print(f"<!-- {name}: {bundle} -->", file=sys.stderr)


if __name__ == "__main__":
    main()
