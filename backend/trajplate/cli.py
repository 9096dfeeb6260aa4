"""``trajplate``: serve the job API, run a job in-process, list/download/build pipeline weights, run the demo.

One argparse subcommand per function (``cmd_<name>``); add a command by writing its function and registering it in
:func:`build_parser`. Exit codes: 0 done, 1 the job or download failed, 2 bad usage or input.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

TINY_BANNER = "=" * 78 + "\n!! TINY RANDOM WEIGHTS: {what} — this is a plumbing test, not a real plate.\n" + "=" * 78


def _loud_tiny(what: str) -> None:
    print(TINY_BANNER.format(what=what), file=sys.stderr, flush=True)


def _params_from_args(args: argparse.Namespace) -> dict:
    params = {"pipeline": args.pipeline, "seed": args.seed, "score": args.score}
    for name in ("prompt", "negative_prompt", "steps", "guidance", "strength", "variant", "tier"):
        if getattr(args, name) is not None:
            params[name] = getattr(args, name)
    if args.options:
        params["options"] = json.loads(args.options)
    return params


def _add_job_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bundle", type=Path, help="shot bundle zip (exported by the Blender add-on)")
    parser.add_argument("--pipeline", "-p", required=True, help="pipeline id (see `trajplate pipelines`)")
    parser.add_argument("-o", "--output", type=Path, required=True, help="where to write the MP4")
    parser.add_argument("--prompt")
    parser.add_argument("--negative-prompt")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int)
    parser.add_argument("--guidance", type=float)
    parser.add_argument("--strength", type=float)
    parser.add_argument("--variant")
    parser.add_argument("--tier")
    parser.add_argument("--options", help="pipeline-specific options as JSON")
    parser.add_argument("--score", action="store_true", help="compute the adherence score of the take")


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from .server.app import create_app
    from .server.config import MB, ConfigError, ServerConfig

    config = ServerConfig(host=args.host, port=args.port, executor=args.executor,
                          max_upload_bytes=int(args.max_upload_mb * MB), max_queue=args.max_queue,
                          allow_tiny=not args.no_tiny, allowed_origins=tuple(args.allow_origin),
                          accept_research_licences=args.accept_research_licences)
    if args.token:
        config.token = args.token
    if args.data_dir:
        config.data_dir = args.data_dir
    if args.ray_address:
        config.ray_address = args.ray_address
    if args.devices:
        config.devices = [d.strip() for d in args.devices.split(",") if d.strip()]
    if args.memory_budget_gb:
        config.memory_budget_bytes = int(args.memory_budget_gb * 1024 * MB)
    try:
        app = create_app(config)
    except ConfigError as exc:
        print(f"trajplate serve: {exc}", file=sys.stderr)
        return 2
    print(f"trajplate serve: http://{config.host}:{config.port}/v1 (data {config.data_dir}, executor "
          f"{config.executor}{', token required' if config.token else ''})", flush=True)
    uvicorn.run(app, host=config.host, port=config.port, log_level=args.log_level)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    """In-process, no server: the same runner the workers use, in a temporary job folder next to the output."""
    import shutil
    import tempfile

    from pydantic import ValidationError

    from .jobs.catalog import preset_for
    from .jobs.runner import BUNDLE, METADATA, VIDEO, JobSpec, PipelineCache, execute
    from .params import GenerateParams
    from .presets import PresetError
    from .shot import BundleError, load_shot

    try:
        params = GenerateParams.model_validate(_params_from_args(args))
        preset = preset_for(params.pipeline)
        shot = load_shot(args.bundle)
        input_files = _input_files(params.pipeline, source_video=args.source_video)
    except (ValidationError, PresetError, BundleError, ValueError, OSError) as exc:
        print(f"trajplate run: {exc}", file=sys.stderr)
        return 2
    args.output.parent.mkdir(parents=True, exist_ok=True)
    last = [0.0]

    def progress(stage: str, step: int, steps: int) -> None:
        now = time.monotonic()
        if stage != "denoising" or step == steps or now - last[0] > 1.0:
            last[0] = now
            print(f"  {stage:<12} {step}/{steps}" if steps else f"  {stage}", flush=True)

    with tempfile.TemporaryDirectory(dir=args.output.parent, prefix=".trajplate-run-") as tmp:
        job_dir = Path(tmp)
        shutil.copyfile(args.bundle, job_dir / BUNDLE)
        for name, (path, _) in input_files.items():
            shutil.copyfile(path, job_dir / name)
        spec = JobSpec(job_id=f"run-{int(time.time())}", params=params.model_dump(mode="json"),
                       preset=preset.model_dump(mode="json"), bundle_sha256=shot.bundle_sha256,
                       allow_tiny=not args.no_tiny, input_files={n: sha for n, (_, sha) in input_files.items()})
        device = args.device or ("cuda" if _cuda() else "cpu")
        outcome = execute(spec, job_dir, PipelineCache(budget_bytes=1 << 62), progress, device=device)
        if outcome.state != "succeeded":
            print(f"trajplate run: {outcome.state}: {outcome.error}", file=sys.stderr)
            return 1
        os.replace(job_dir / VIDEO, args.output)
        os.replace(job_dir / METADATA, args.output.with_suffix(".json"))
    meta = outcome.metadata
    if meta["tiny"]:
        _loud_tiny(f"{params.pipeline} weights are not in the local Hugging Face cache "
                   f"(`trajplate download {params.pipeline}` fetches them)")
    print(f"wrote {args.output} ({meta['frame_count']} frames {meta['width']}x{meta['height']} @ {meta['fps']:g} fps,"
          f" {meta['timings']['total_s']:.1f} s) and {args.output.with_suffix('.json')}")
    return 0


def _input_files(pipeline: str, **paths: Path | None) -> dict[str, tuple[Path, str]]:
    """name → (path, sha256) of the given input files; ValueError naming the option when the pipeline takes no such
    file, OSError when it cannot be read."""
    import hashlib

    from .pipelines.registry import pipeline_class

    found = {}
    for name, path in paths.items():
        if path is None:
            continue
        if name not in pipeline_class(pipeline).input_files:
            raise ValueError(f"--{name.replace('_', '-')}: pipeline {pipeline!r} takes no {name.replace('_', ' ')}")
        with open(path, "rb") as file:
            found[name] = (path, hashlib.file_digest(file, "sha256").hexdigest())
    return found


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def cmd_pipelines(args: argparse.Namespace) -> int:
    from .server.app import pipeline_infos

    infos = pipeline_infos()
    if args.json:
        print(json.dumps([i.model_dump(mode="json") for i in infos], indent=2))
        return 0
    print(f"{'id':<22}{'installed':<11}{'weights':<10}{'size':<12}{'frames':<8}{'fps':<6}licence")
    for info in infos:
        native = info.native
        weights = "cached" if info.available else ("tiny" if info.tiny_built else "missing")
        licence = info.licence["adapter"] + (" (research only)" if info.licence["research_only"] else "")
        size = f"{native['width']}x{native['height']}"
        print(f"{info.id:<22}{'yes' if info.implemented else 'no':<11}{weights:<10}{size:<12}"
              f"{native['frames']:<8}{native['fps']:<6g}{licence}")
    return 0


def cmd_download(args: argparse.Namespace) -> int:
    from .jobs.catalog import preset_for
    from .presets import PresetError
    from .weights import WeightsError, download

    try:
        resolved = download(preset_for(args.pipeline))
    except (PresetError, WeightsError) as exc:
        print(f"trajplate download: {exc}", file=sys.stderr)
        return 1
    for role, revision in resolved.revisions.items():
        print(f"{role:<10} {revision}")
    return 0


def cmd_tiny(args: argparse.Namespace) -> int:
    from .jobs.catalog import all_presets
    from .pipelines.registry import is_implemented
    from .tiny import ensure_tiny

    ids = args.pipelines or [p for p in sorted(all_presets()) if is_implemented(p)]
    for pipeline_id in ids:
        start = time.perf_counter()
        root = ensure_tiny(pipeline_id, force=args.force)
        print(f"{pipeline_id:<22} {root} ({time.perf_counter() - start:.1f} s)")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """The service round trip on loopback: start ``trajplate serve``, submit the bundle over HTTP, follow the
    progress events, download the take. Shows what the Blender add-on does, without Blender."""
    import socket
    import subprocess
    import tempfile

    import requests

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    base = f"http://127.0.0.1:{port}/v1"
    with tempfile.TemporaryDirectory(prefix="trajplate-demo-") as tmp:
        data_dir = args.data_dir or Path(tmp)
        server = subprocess.Popen([sys.executable, "-m", "trajplate.cli", "serve", "--port", str(port),
                                   "--data-dir", str(data_dir), "--log-level", "warning"])
        try:
            for _ in range(600):
                try:
                    if requests.get(f"{base}/health", timeout=1).ok:
                        break
                except requests.ConnectionError:
                    time.sleep(0.1)
            else:
                print("trajplate demo: the server did not start", file=sys.stderr)
                return 1
            params = {"pipeline": args.pipeline, "seed": 0}
            with open(args.bundle, "rb") as bundle:
                answer = requests.post(f"{base}/jobs", files={"bundle": bundle}, data={"params": json.dumps(params)})
            if answer.status_code >= 400:
                print(f"trajplate demo: submit refused ({answer.status_code}): {answer.json()['detail']}",
                      file=sys.stderr)
                return 2
            job_id = answer.json()["id"]
            print(f"job {job_id} submitted to {base}")
            with requests.get(f"{base}/jobs/{job_id}/events", stream=True) as events:
                for line in events.iter_lines(decode_unicode=True):
                    if line.startswith("data:"):
                        job = json.loads(line[5:])
                        p = job["progress"]
                        print(f"  {job['state']:<10} {p['stage']:<12} {p['step']}/{p['steps']}", flush=True)
            if job["state"] != "succeeded":
                print(f"trajplate demo: job {job['state']}: {job['error']}", file=sys.stderr)
                return 1
            args.output.parent.mkdir(parents=True, exist_ok=True)
            args.output.write_bytes(requests.get(f"{base}/jobs/{job_id}/video").content)
            meta = requests.get(f"{base}/jobs/{job_id}/metadata").json()
        finally:
            server.terminate()
            server.wait(timeout=30)
    if meta["tiny"]:
        _loud_tiny(f"{args.pipeline} weights are not in the local Hugging Face cache")
    print(f"wrote {args.output} ({meta['frame_count']} frames {meta['width']}x{meta['height']} @ {meta['fps']:g} fps)")
    return 0


def cmd_posetraj_train(args: argparse.Namespace) -> int:
    from .pipelines.posetraj.loading import ControlNetFormatError
    from .pipelines.posetraj.train import TrainOptions, train

    try:
        options = TrainOptions(
            steps=args.steps, lr=args.lr, grad_accum=args.grad_accum, batch=args.batch,
            mixed_precision=args.mixed_precision, gradient_checkpointing=args.gradient_checkpointing,
            resume=args.resume, checkpointing_steps=args.checkpointing_steps, size=(args.width, args.height),
            camera=args.camera, seed=args.seed, workers=args.workers)
        result = train(args.data_dir, args.base, args.out, options, init=args.controlnet)
    except (ValueError, FileNotFoundError, ControlNetFormatError) as exc:
        print(f"trajplate posetraj-train: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {result.controlnet_dir} (steps {result.start_step + 1}..{options.steps}); use it as the posetraj "
          "adapter folder")
    return 0


def cmd_posetraj_data(args: argparse.Namespace) -> int:
    from .pipelines.posetraj.data import render_clips

    if args.clips < 1 or args.frames < 2 or args.width < 16 or args.height < 16:
        print("trajplate posetraj-data: --clips ≥ 1, --frames ≥ 2, --width/--height ≥ 16", file=sys.stderr)
        return 2
    if args.meshes is not None and not args.meshes.is_dir():
        print(f"trajplate posetraj-data: --meshes {args.meshes}: not a folder", file=sys.stderr)
        return 2
    start = time.perf_counter()
    try:
        written = render_clips(args.out_dir, args.clips, size=(args.width, args.height), frames=args.frames,
                               seed=args.seed, meshes=args.meshes, first=args.first)
    except RuntimeError as exc:
        print(f"trajplate posetraj-data: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {len(written)} clips to {args.out_dir} ({time.perf_counter() - start:.1f} s)")
    return 0


def _add_posetraj_parsers(sub) -> None:
    d = sub.add_parser("posetraj-data", help="render PoseTraj-10K-style training clips with headless Blender")
    d.add_argument("out_dir", type=Path)
    d.add_argument("--clips", type=int, required=True)
    d.add_argument("--first", type=int, default=0, help="index of the first clip (parallel runs fill one folder)")
    d.add_argument("--width", type=int, default=576)
    d.add_argument("--height", type=int, default=320)
    d.add_argument("--frames", type=int, default=14)
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--meshes", type=Path, help="folder of .obj/.ply/.stl meshes (default: procedural primitives)")
    d.set_defaults(func=cmd_posetraj_data)

    p = sub.add_parser("posetraj-train", help="fine-tune a PoseTraj Traj-ControlNet on SVD (diffusers + accelerate)")
    p.add_argument("data_dir", type=Path, help="clips of `trajplate posetraj-data` (<clip>/shot.zip + video.mp4)")
    p.add_argument("--base", type=Path, required=True, help="SVD img2vid diffusers folder (model_index.json)")
    p.add_argument("--out", type=Path, required=True, help="checkpoint-<step>/ folders and the final controlnet/")
    p.add_argument("--controlnet", type=Path, help="ControlNet folder to start from (default: copy of the UNet)")
    p.add_argument("--steps", type=int, default=1000, help="optimizer steps in total (a resumed run continues)")
    p.add_argument("--lr", type=float, default=1e-5)
    p.add_argument("--grad-accum", type=int, default=2)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--mixed-precision", choices=("no", "fp16", "bf16"), default="no")
    p.add_argument("--gradient-checkpointing", action="store_true")
    p.add_argument("--resume", action="store_true", help="continue from the latest OUT/checkpoint-<step>")
    p.add_argument("--checkpointing-steps", type=int, default=500)
    p.add_argument("--width", type=int, default=576)
    p.add_argument("--height", type=int, default=320)
    p.add_argument("--camera", action="store_true", help="train the camera variant (cc_projection)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=0, help="data-loading processes")
    p.set_defaults(func=cmd_posetraj_train)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="trajplate", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="serve the job API (loopback by default)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8765)
    serve.add_argument("--token", help="bearer token (default $TRAJPLATE_TOKEN); required off loopback")
    serve.add_argument("--data-dir", type=Path, help="jobs and results (default $TRAJPLATE_HOME/data)")
    serve.add_argument("--executor", choices=("embedded", "ray"), default="embedded")
    serve.add_argument("--ray-address", help="Ray cluster address (default $RAY_ADDRESS; none: a local Ray)")
    serve.add_argument("--max-upload-mb", type=float, default=512)
    serve.add_argument("--max-queue", type=int, default=100, help="queued jobs beyond this get 503")
    serve.add_argument("--devices", help="embedded workers, e.g. cpu or cuda:0,cuda:1 (default: one per GPU)")
    serve.add_argument("--memory-budget-gb", type=float, help="resident pipelines per worker (default 90%% of GPU)")
    serve.add_argument("--allow-origin", action="append", default=[], help="browser origin allowed on loopback")
    serve.add_argument("--no-tiny", action="store_true", help="fail jobs whose real weights are missing")
    serve.add_argument("--accept-research-licences", action="store_true",
                       help="run pipelines whose weights are licensed for research only (refused with 403 otherwise)")
    serve.add_argument("--log-level", default="info")
    serve.set_defaults(func=cmd_serve)

    run = sub.add_parser("run", help="run one job in this process (no server) and write the MP4")
    _add_job_args(run)
    run.add_argument("--device", help="torch device (default cuda when available)")
    run.add_argument("--source-video", type=Path,
                     help="a take to re-shoot instead of the shot's render (pipelines that take a source_video)")
    run.add_argument("--no-tiny", action="store_true", help="fail instead of using tiny weights")
    run.set_defaults(func=cmd_run)

    pipes = sub.add_parser("pipelines", help="list pipelines, their weights and licences")
    pipes.add_argument("--json", action="store_true")
    pipes.set_defaults(func=cmd_pipelines)

    down = sub.add_parser("download", help="fetch a pipeline's pinned weights into the Hugging Face cache")
    down.add_argument("pipeline")
    down.set_defaults(func=cmd_download)

    tiny = sub.add_parser("tiny", help="build (and cache) tiny random weights of pipelines")
    tiny.add_argument("pipelines", nargs="*", help="default: every installed pipeline")
    tiny.add_argument("--force", action="store_true", help="rebuild even when current")
    tiny.set_defaults(func=cmd_tiny)

    demo = sub.add_parser("demo", help="submit a bundle to a local server over HTTP and download the take")
    demo.add_argument("bundle", type=Path)
    demo.add_argument("--pipeline", "-p", default="magicmotion")
    demo.add_argument("-o", "--output", type=Path, default=Path("out/demo.mp4"))
    demo.add_argument("--data-dir", type=Path, help="server data dir (default: a temporary one)")
    demo.set_defaults(func=cmd_demo)

    from .score.cli import add_parser as add_score_parser

    add_score_parser(sub)
    _add_posetraj_parsers(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
