"""PoseTraj: sampling cost of SVD + Traj-ControlNet against stock SVD img2vid in the same process.

    python bench/posetraj.py --tiny            # CPU smoke run: tiny weights, 64x64, 14 frames, 2 steps
    python bench/posetraj.py                   # CUDA: full-size random fp16 SVD (14 frames) at 576x320
    python bench/posetraj.py --modes resident model_offload --steps 8

For each memory mode: the stock diffusers ``StableVideoDiffusionPipeline`` and ours (same random UNet weights plus a
ControlNet copied from its encoder) — seconds per denoising step (median, from the step callback), total seconds and
peak VRAM, printed as ours / stock. Goal: ≤ 1.6× per step (the ControlNet re-runs the encoder).

``--data N`` instead measures ``trajplate posetraj-data`` (N clips rendered with headless Blender on this CPU: frames
per second and the projected time for 10,000 clips; 576x320x14 by default, 96x64x6 with --tiny) and then
``posetraj-train`` seconds per optimizer step on them (tiny SVD weights, 64x64, CPU; GPU training not measured).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import PIL.Image
import torch
from diffusers import EulerDiscreteScheduler, StableVideoDiffusionPipeline, UNetSpatioTemporalConditionModel
from diffusers.utils import logging as diffusers_logging
from trajplate.pipelines.common import apply_memory_mode
from trajplate.pipelines.posetraj import tiny
from trajplate.pipelines.posetraj.models import ControlNetSDVModel, UNetSpatioTemporalConditionControlNetModel
from trajplate.pipelines.posetraj.pipeline import StableVideoDiffusionPipelineControlNet
from trajplate.pipelines.tiny_parts import save_tiny_svd_components
from trajplate.pipelines.trajectory_attention.tiny import tiny_vae
from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection


def components(full: bool, dtype: torch.dtype, workdir: str) -> dict:
    """Random SVD components: the real img2vid config (``full``) or the tiny test ones."""
    torch.manual_seed(0)
    if full:
        from diffusers import AutoencoderKLTemporalDecoder

        unet = UNetSpatioTemporalConditionModel(num_frames=14)
        vae = AutoencoderKLTemporalDecoder()
        encoder = CLIPVisionModelWithProjection(CLIPVisionConfig(
            hidden_size=1280, projection_dim=1024, num_hidden_layers=32, num_attention_heads=16,
            intermediate_size=5120, patch_size=14, image_size=224))
        scheduler = EulerDiscreteScheduler(
            beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", prediction_type="v_prediction",
            sigma_max=700.0, sigma_min=0.002, use_karras_sigmas=True, timestep_type="continuous",
            interpolation_type="linear", steps_offset=1, timestep_spacing="leading")
        extractor = CLIPImageProcessor(crop_size=224, size=224)
    else:
        save_tiny_svd_components(Path(workdir))
        unet, vae = tiny.tiny_unet(), tiny_vae()
        encoder = CLIPVisionModelWithProjection.from_pretrained(f"{workdir}/image_encoder")
        scheduler = EulerDiscreteScheduler.from_pretrained(f"{workdir}/scheduler")
        extractor = CLIPImageProcessor.from_pretrained(f"{workdir}/feature_extractor")
    return dict(unet=unet.to(dtype), vae=vae.to(dtype), image_encoder=encoder.to(dtype), scheduler=scheduler,
                feature_extractor=extractor)


def run(pipe, call, steps: int, device: torch.device) -> tuple[float, float, float]:
    """(median s/step, total s, peak VRAM GiB or nan)."""
    stamps = []

    def on_step(_p, i, _t, _k):
        stamps.append(time.perf_counter())
        return {}

    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    call(pipe, on_step)
    if device.type == "cuda":
        torch.cuda.synchronize()
    total = time.perf_counter() - start
    per_step = statistics.median(np.diff([start, *stamps])) if stamps else float("nan")
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else float("nan")
    return per_step, total, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="CPU smoke run with tiny weights")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--modes", nargs="+", default=None)
    parser.add_argument("--data", type=int, default=0, help="bench data rendering + training on N clips instead")
    args = parser.parse_args()
    if args.data:
        return data_and_training(args.data, args.tiny)
    diffusers_logging.set_verbosity_error()
    cuda = torch.cuda.is_available() and not args.tiny
    device = torch.device("cuda" if cuda else "cpu")
    dtype = torch.float16 if cuda else torch.float32
    width, height, frames = (576, 320, 14) if cuda else (64, 64, 14)
    steps = args.steps or (25 if cuda else 2)
    modes = args.modes or (["resident", "model_offload", "group_offload", "sequential_offload"] if cuda
                           else ["resident"])
    with tempfile.TemporaryDirectory() as workdir:
        parts = components(cuda, dtype, workdir)
    ours_unet = UNetSpatioTemporalConditionControlNetModel.from_config(parts["unet"].config).to(dtype)
    ours_unet.load_state_dict(parts["unet"].state_dict())
    controlnet = ControlNetSDVModel.from_unet(
        ours_unet, conditioning_embedding_out_channels=(16, 32, 96, 256) if cuda else tiny.TINY_EMBEDDING_CHANNELS)
    image = PIL.Image.fromarray(np.random.default_rng(0).integers(0, 255, (height, width, 3), dtype=np.uint8))
    maps = torch.rand(frames, 3, height, width) * 2 - 1
    common = dict(height=height, width=width, num_frames=frames, num_inference_steps=steps, decode_chunk_size=8,
                  output_type="np")
    print(f"device {device} dtype {dtype} {width}x{height}x{frames} steps {steps}")
    for mode in modes:
        stock = StableVideoDiffusionPipeline(**parts)
        stock.set_progress_bar_config(disable=True)
        apply_memory_mode(stock, mode, device)
        s = run(stock, lambda p, cb: p(image, generator=torch.Generator("cpu").manual_seed(0),
                                       callback_on_step_end=cb, **common), steps, device)
        stock.to("cpu") if mode == "resident" else stock.remove_all_hooks()
        ours = StableVideoDiffusionPipelineControlNet(**{**parts, "unet": ours_unet}, controlnet=controlnet)
        ours.set_progress_bar_config(disable=True)
        apply_memory_mode(ours, mode, device)
        o = run(ours, lambda p, cb: p(image, maps, generator=torch.Generator("cpu").manual_seed(0),
                                      callback_on_step_end=cb, **common), steps, device)
        ours.to("cpu") if mode == "resident" else ours.remove_all_hooks()
        print(f"{mode:18s} s/step stock {s[0]:.3f} ours {o[0]:.3f} ratio {o[0] / s[0]:.2f} | total stock {s[1]:.1f} "
              f"ours {o[1]:.1f} ratio {o[1] / s[1]:.2f} | peak GiB stock {s[2]:.2f} ours {o[2]:.2f} "
              f"ratio {o[2] / s[2]:.2f}")


def data_and_training(clips: int, tiny_size: bool) -> None:
    from trajplate.pipelines.posetraj.data import render_clips
    from trajplate.pipelines.posetraj.train import TrainOptions, train

    (width, height, frames) = (96, 64, 6) if tiny_size else (576, 320, 14)
    with tempfile.TemporaryDirectory() as workdir:
        start = time.perf_counter()
        render_clips(Path(workdir) / "data", clips, size=(width, height), frames=frames)
        elapsed = time.perf_counter() - start
        per_clip = elapsed / clips
        print(f"posetraj-data {width}x{height}x{frames}: {clips} clips in {elapsed:.1f} s, "
              f"{clips * frames / elapsed:.2f} frames/s (incl. Blender start-up), projected 10,000 clips "
              f"{per_clip * 10_000 / 3600:.1f} h on this CPU")
        tiny.build(Path(workdir) / "tiny")
        steps = 4
        result = train(Path(workdir) / "data", Path(workdir) / "tiny" / "base", Path(workdir) / "run",
                       TrainOptions(steps=steps, lr=1e-4, grad_accum=1, size=(64, 64)), log=lambda _m: None)
        times = np.diff(result.step_times)
        print(f"posetraj-train tiny 64x64x14 CPU: {statistics.median(times):.2f} s/step (median of {len(times)}); "
              "GPU full-size training: not measured")


if __name__ == "__main__":
    main()
