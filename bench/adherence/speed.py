"""Speed of ``score_take`` on a 49-frame 720×480 take (goal: ≤ 3 s on the 2-core CPU).

    python bench/adherence/speed.py [--repeats 5]

Scores the oracle of the ``dolly_arc`` shot (built and cached on first use) several times and prints every
run, the best and the median, and the ratio to the 3 s goal. The CPU may be shared: read the best.
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from trajplate.score import score_take  # noqa: E402
from trajplate.shot import load_shot  # noqa: E402

from bench.adherence.dataset import shot_bundle  # noqa: E402

GOAL_S = 3.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    shot = load_shot(shot_bundle("dolly_arc", 720, 480, 49))
    frames, shot_frames = shot.rgb_frames, shot.frame_numbers.astype(float)
    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        score_take(frames, shot, shot_frames)
        times.append(time.perf_counter() - t0)
        print(f"run: {times[-1]:.2f} s")
    best, median = min(times), statistics.median(times)
    print(f"score_take, {len(frames)} frames {shot.width}x{shot.height}: best {best:.2f} s, median {median:.2f} s; "
          f"best / goal {best / GOAL_S:.2f}, median / goal {median / GOAL_S:.2f} (goal {GOAL_S:g} s)")


if __name__ == "__main__":
    main()
