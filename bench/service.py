"""Service overhead against calling the same tiny job in-process (issue 3 speed goals).

    python bench/service.py --bundle SMALL.zip --large-bundle STANDARD_720x480x49.zip [--jobs 10]

Runs the test pipeline ``test-loop`` (a real DDIM loop, a few ms per step) both ways on the same bundle:
- in-process: ``trajplate.jobs.runner.execute`` with a warm pipeline cache (the baseline);
- through a real ``trajplate serve`` on loopback (embedded executor, one CPU worker), warmed by one job first.
Prints medians and the goals: submit → worker start ≤ 50 ms; upload + validation of the 49-frame 720×480 bundle with
depth and masks ≤ 0.5 s; whole-job overhead (HTTP, store, progress, download) ≤ 0.25 s beyond the in-process run.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from support.pipelines import PRESET, ServerProcess, follow, service_env, submit  # noqa: E402
from trajplate.jobs.runner import JobSpec, PipelineCache, execute  # noqa: E402
from trajplate.shot import load_shot  # noqa: E402

PARAMS = {"pipeline": "test-loop", "steps": 8}


def in_process(bundle: Path, jobs: int) -> list[float]:
    import os
    import shutil

    env = service_env()
    os.environ.update({k: env[k] for k in ("TRAJPLATE_PLUGINS", "TRAJPLATE_HOME")})
    cache = PipelineCache(1 << 40)
    times = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(jobs + 1):
            job_dir = Path(tmp) / str(i)
            job_dir.mkdir()
            start = time.perf_counter()
            shutil.copyfile(bundle, job_dir / "bundle.zip")
            spec = JobSpec(str(i), PARAMS, PRESET.model_dump(mode="json"), "x")
            outcome = execute(spec, job_dir, cache, lambda *a: None)
            assert outcome.state == "succeeded", outcome.error
            if i:  # the first run loads the pipeline: warm-up
                times.append(time.perf_counter() - start)
    return times


def through_server(bundle: bytes, large: bytes | None, jobs: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"job": [], "dispatch": [], "post": [], "large_post": []}
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        data.mkdir()
        server = ServerProcess(data).start()
        try:
            with httpx.Client(base_url=server.url, timeout=120) as client:
                follow(client, submit(client, bundle, PARAMS).json()["id"])  # warm: loads the pipeline
                for _ in range(jobs):
                    start = time.perf_counter()
                    answer = submit(client, bundle, PARAMS)
                    posted = time.perf_counter()
                    job_id = answer.json()["id"]
                    final = follow(client, job_id)[-1]
                    video = client.get(f"/v1/jobs/{job_id}/video").content
                    out["job"].append(time.perf_counter() - start)
                    assert final["state"] == "succeeded" and video
                    out["post"].append(posted - start)
                    out["dispatch"].append(final["started_at"] - final["created_at"])
                for _ in range(3 if large else 0):
                    start = time.perf_counter()
                    answer = client.post("/v1/jobs", files={"bundle": ("big.zip", large, "application/zip")},
                                         data={"params": '{"pipeline": "test-loop", "steps": 1}'})
                    out["large_post"].append(time.perf_counter() - start)
                    assert answer.status_code == 201, answer.text
                    follow(client, answer.json()["id"])
        finally:
            server.stop()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, required=True)
    parser.add_argument("--large-bundle", type=Path, help="the 49-frame 720x480 bundle with depth and masks")
    parser.add_argument("--jobs", type=int, default=10)
    args = parser.parse_args()
    baseline = in_process(args.bundle, args.jobs)
    large = args.large_bundle.read_bytes() if args.large_bundle else None
    served = through_server(args.bundle.read_bytes(), large, args.jobs)
    med = statistics.median
    print(f"in-process job (baseline)         {med(baseline) * 1000:8.1f} ms median of {len(baseline)}")
    print(f"through the service               {med(served['job']) * 1000:8.1f} ms  "
          f"(x{med(served['job']) / med(baseline):.2f} of in-process)")
    overhead = med(served["job"]) - med(baseline)
    print(f"whole-job overhead                {overhead * 1000:8.1f} ms   goal <= 250 ms  "
          f"{'OK' if overhead <= 0.25 else 'MISSED'}")
    print(f"submit -> worker start (dispatch) {med(served['dispatch']) * 1000:8.1f} ms   goal <= 50 ms   "
          f"{'OK' if med(served['dispatch']) <= 0.05 else 'MISSED'}")
    print(f"POST of the small bundle          {med(served['post']) * 1000:8.1f} ms")
    if large:
        start = time.perf_counter()
        load_shot(args.large_bundle)
        local = time.perf_counter() - start
        post = med(served["large_post"])
        print(f"upload + validation, {len(large) / 1e6:.1f} MB bundle {post * 1000:8.1f} ms   goal <= 500 ms  "
              f"{'OK' if post <= 0.5 else 'MISSED'}  (load_shot alone in-process: {local * 1000:.1f} ms, "
              f"x{post / local:.2f})")


if __name__ == "__main__":
    main()
