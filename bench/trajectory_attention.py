"""Trajectory Attention: track construction on the CPU, sampling cost against stock SVD-XT on a GPU.

    python bench/trajectory_attention.py --tiny                 # CPU smoke run: tiny weights, 128x64, 2 steps
    python bench/trajectory_attention.py                        # CUDA: full-size random fp16 SVD-XT, 1024x576x25
    python bench/trajectory_attention.py --modes resident model_offload --steps 8
    python bench/trajectory_attention.py --bundle shot.zip      # tracks of that bundle (default: the cached test one)

1. Tracks: ``shot_tracks`` for 36,864 tracks × 25 frames (the authors' grid at 1024×576), median of 5 runs, as a
   ratio to the issue's 0.5 s goal.
2. Sampling: the stock diffusers ``StableVideoDiffusionPipeline`` and ours (same random weights + the 16-module
   branch), per memory mode: seconds per denoising step (median, from the step callback), total seconds and peak
   VRAM, printed as ours / stock. Goal: ≤ 1.3× per step.
"""

from __future__ import annotations

import argparse
import glob
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import PIL.Image
import torch
from diffusers import (
    AutoencoderKLTemporalDecoder,
    EulerDiscreteScheduler,
    StableVideoDiffusionPipeline,
    UNetSpatioTemporalConditionModel,
)
from trajplate.conditioning import trajectory_attention as cond
from trajplate.params import MEMORY_MODES
from trajplate.pipelines.common import apply_memory_mode
from trajplate.pipelines.trajectory_attention import tiny
from trajplate.pipelines.trajectory_attention.attention import TrajectoryControl
from trajplate.pipelines.trajectory_attention.pipeline import TrajectoryAttentionSVDPipeline
from trajplate.pipelines.trajectory_attention.unet import TrajectoryAttentionUNet
from trajplate.shot import load_shot
from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

ROOT = Path(__file__).resolve().parents[1]
TRACK_GOAL_S = 0.5
STEP_GOAL = 1.3


def bench_tracks(bundle: Path) -> None:
    shot = load_shot(bundle)
    times, cpu = [], []
    for _ in range(5):
        start, start_cpu = time.perf_counter(), time.process_time()
        tracks, _ = cond.shot_tracks(shot)
        times.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    median, median_cpu = statistics.median(times), statistics.median(cpu)
    print(f"tracks: {tracks.num_tracks} x {tracks.num_frames} frames from {shot!r}; load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    # CPU time is what the process itself spent: the wall time on a shared, oversubscribed machine is not.
    print(f"  wall median {median:.3f} s (ratio to the {TRACK_GOAL_S} s goal {median / TRACK_GOAL_S:.2f}); "
          f"process CPU median {median_cpu:.3f} s (ratio {median_cpu / TRACK_GOAL_S:.2f}); "
          f"visible {tracks.valid.mean():.1%}")


def full_components(device: torch.device, dtype: torch.dtype) -> dict:
    """SVD-XT-shaped components with random weights (configs of the public model: UNet and VAE class defaults,
    CLIP ViT-H/14 image encoder), built directly on ``device``."""
    with torch.device(device):
        torch.manual_seed(0)
        unet = UNetSpatioTemporalConditionModel(sample_size=96, num_frames=25).to(dtype)
        encoder = CLIPVisionModelWithProjection(CLIPVisionConfig(
            hidden_size=1280, intermediate_size=5120, num_hidden_layers=32, num_attention_heads=16, patch_size=14,
            image_size=224, projection_dim=1024, hidden_act="gelu")).to(dtype)
        vae = AutoencoderKLTemporalDecoder().to(dtype)
    return {"unet": unet, "image_encoder": encoder, "vae": vae, "feature_extractor": CLIPImageProcessor(
        crop_size=224, size=224)}


def tiny_components() -> dict:
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        tiny.build(Path(tmp))
        pipe = StableVideoDiffusionPipeline.from_pretrained(Path(tmp) / "base")
    return {"unet": pipe.unet, "image_encoder": pipe.image_encoder, "vae": pipe.vae,
            "feature_extractor": pipe.feature_extractor}


def scheduler() -> EulerDiscreteScheduler:
    return EulerDiscreteScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", interpolation_type="linear",
        prediction_type="v_prediction", sigma_max=700.0, sigma_min=0.002, steps_offset=1,
        timestep_spacing="leading", timestep_type="continuous", use_karras_sigmas=True,
    )


def with_branch(stock_unet: UNetSpatioTemporalConditionModel) -> TrajectoryAttentionUNet:
    """The same weights plus a randomly initialised branch, on the stock UNet's device and dtype."""
    param = next(stock_unet.parameters())
    with torch.device(param.device):
        torch.manual_seed(1)
        unet = TrajectoryAttentionUNet.from_config(stock_unet.config)
    if param.dtype != torch.float32:
        unet = unet.to(param.dtype)
    unet.load_state_dict(stock_unet.state_dict(), strict=False)
    return unet.eval()


def run_once(pipe, image, size, steps, device, **extra) -> tuple[float, float, float]:
    """(median s/step, total s, peak GiB) of one call."""
    stamps = []

    def on_step(_pipe, i, _t, _kwargs):
        if device.type == "cuda":
            torch.cuda.synchronize()
        stamps.append(time.perf_counter())
        return {}

    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    pipe(image, height=size[1], width=size[0], num_frames=25, num_inference_steps=steps, decode_chunk_size=8,
         generator=torch.Generator("cpu").manual_seed(0), output_type="np", callback_on_step_end=on_step, **extra)
    if device.type == "cuda":
        torch.cuda.synchronize()
    total = time.perf_counter() - start
    steps_s = np.diff([start, *stamps])[1:]  # drop the first step (it includes image encoding)
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else float("nan")
    return float(np.median(steps_s)), total, peak


def bench_sampling(tiny_mode: bool, modes: list[str], steps: int) -> None:
    device = torch.device("cpu" if tiny_mode or not torch.cuda.is_available() else "cuda")
    if device.type == "cpu" and not tiny_mode:
        print("sampling: no CUDA device; run with --tiny for the CPU smoke run (GPU figures not measured)")
        return
    dtype = torch.float32 if tiny_mode else torch.float16
    size = (128, 64) if tiny_mode else (1024, 576)
    grid = cond.grid_queries(size, rng=np.random.default_rng(0))
    rng = np.random.default_rng(1)
    coords = np.clip(grid[None] + np.cumsum(rng.normal(0, 2, (25, len(grid), 2)), axis=0), 0, np.array(size) - 1)
    valid = rng.uniform(size=(25, len(grid))) > 0.1
    image = PIL.Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))
    print(f"sampling on {device} ({torch.cuda.get_device_name() if device.type == 'cuda' else 'CPU'}), {dtype}, "
          f"{size[0]}x{size[1]}x25, {steps} steps, CFG batch 2")
    print(f"  {'mode':20s} {'stock s/step':>12s} {'ours s/step':>12s} {'ratio':>6s} {'stock total':>11s} "
          f"{'ours total':>10s} {'ratio':>6s} {'stock GiB':>9s} {'ours GiB':>8s}")
    for mode in modes:
        results = {}
        for name in ("stock", "ours"):
            # Fresh components per run (same seed, same weights), so no offload hook outlives its run.
            parts = tiny_components() if tiny_mode else full_components(device, dtype)
            extra = {}
            if name == "ours":
                parts["unet"] = with_branch(parts["unet"])
                extra["trajectories"] = TrajectoryControl(
                    torch.from_numpy(coords.astype(np.float32)).to(device), torch.from_numpy(valid).to(device), size,
                    torch.Generator("cpu").manual_seed(0))
            cls = StableVideoDiffusionPipeline if name == "stock" else TrajectoryAttentionSVDPipeline
            pipe = cls(scheduler=scheduler(), **parts)
            pipe.set_progress_bar_config(disable=True)
            if device.type == "cuda" and mode != "resident":
                pipe.to("cpu")
            applied = apply_memory_mode(pipe, mode, device)
            run_once(pipe, image, size, 2, device, **extra)  # warm-up (kernels, allocator, offload hooks)
            results[name] = run_once(pipe, image, size, steps, device, **extra)
            del pipe, parts, extra
            if device.type == "cuda":
                torch.cuda.empty_cache()
        (s_step, s_total, s_peak), (o_step, o_total, o_peak) = results["stock"], results["ours"]
        print(f"  {mode + ('' if applied == mode else ' (as ' + applied + ')'):20s} {s_step:12.3f} {o_step:12.3f} "
              f"{o_step / s_step:6.2f} {s_total:11.2f} {o_total:10.2f} {o_total / s_total:6.2f} {s_peak:9.2f} "
              f"{o_peak:8.2f}")
    print(f"  goal: ours/stock per step <= {STEP_GOAL}")


def default_bundle() -> Path | None:
    found = sorted(glob.glob(str(ROOT / ".cache" / "test-bundles" / "*" / "standard.zip")),
                   key=lambda p: Path(p).stat().st_mtime)
    return Path(found[-1]) if found else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="CPU smoke run with tiny weights")
    parser.add_argument("--bundle", type=Path, default=None, help="shot bundle for the track benchmark")
    parser.add_argument("--modes", nargs="+", default=None, choices=MEMORY_MODES)
    parser.add_argument("--steps", type=int, default=None)
    args = parser.parse_args()
    bundle = args.bundle or default_bundle()
    if bundle is None:
        print("tracks: no bundle given and no cached test bundle (run the tests once, or pass --bundle)")
    else:
        bench_tracks(bundle)
    modes = args.modes or (["resident"] if args.tiny else list(MEMORY_MODES))
    bench_sampling(args.tiny, modes, args.steps or (2 if args.tiny else 10))


if __name__ == "__main__":
    main()
