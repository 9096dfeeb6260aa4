"""MagicMotion speed and memory against stock diffusers ``CogVideoXImageToVideoPipeline`` in the same process (issue 5).

    python bench/magicmotion.py                       # CUDA: full-size CogVideoX-5B-I2V shapes, random weights, bf16
    python bench/magicmotion.py --modes resident,group_offload --steps 4
    python bench/magicmotion.py --tiny                # CPU smoke run: tiny weights through the real loader

For the stock pipeline (resident) and for ours in each memory mode it runs ``--steps`` denoising steps at 49×480×720
and prints seconds per step (median of the steps after the first), the measured total (encode + steps + decode), the
total extrapolated to 50 steps, and the peak VRAM — each as a ratio to stock. Goals (issue 5): resident per-step time
<= 2.1× stock (the ControlNet doubles the DiT work); resident end to end >= 1.5× faster than the authors' default
(``sequential_offload``); a mode for 24 GB cards under 23 GB peak. Weights are random with the real shapes; the text
encoder is a 1-layer T5 of the real width (prompt encoding is not what is measured).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import PIL.Image
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "backend"))

from diffusers import (  # noqa: E402
    AutoencoderKLCogVideoX,
    CogVideoXDDIMScheduler,
    CogVideoXDPMScheduler,
    CogVideoXImageToVideoPipeline,
    CogVideoXTransformer3DModel,
)
from diffusers.utils import logging as diffusers_logging  # noqa: E402
from trajplate.pipelines.common import apply_memory_mode  # noqa: E402
from trajplate.pipelines.magicmotion.adapter import group_offload  # noqa: E402
from trajplate.pipelines.magicmotion.models import MagicMotionTransformer3DModel, TrajectoryControlNet  # noqa: E402
from trajplate.pipelines.magicmotion.pipeline import MagicMotionPipeline  # noqa: E402
from trajplate.pipelines.magicmotion.tiny import I2V_SCHEDULER  # noqa: E402
from trajplate.pipelines.tiny_parts import save_tiny_t5, tiny_cogvideox_transformer_config  # noqa: E402
from transformers import AutoTokenizer, T5Config, T5EncoderModel  # noqa: E402

# THUDM/CogVideoX-5b-I2V transformer/config.json: 48 heads × 64, 42 layers, 32 input channels, learned pos-emb.
FULL_TRANSFORMER = dict(
    num_attention_heads=48, attention_head_dim=64, in_channels=32, out_channels=16, time_embed_dim=512,
    text_embed_dim=4096, num_layers=42, sample_width=90, sample_height=60, sample_frames=49, patch_size=2,
    max_text_seq_length=226, use_rotary_positional_embeddings=True, use_learned_positional_embeddings=True,
)
FULL_VAE = dict(
    in_channels=3, out_channels=3, latent_channels=16, block_out_channels=(128, 256, 256, 512), layers_per_block=3,
    down_block_types=("CogVideoXDownBlock3D",) * 4, up_block_types=("CogVideoXUpBlock3D",) * 4, norm_num_groups=32,
    temporal_compression_ratio=4, scaling_factor=0.7,
)
PROMPT = "a green cone, a red block and a blue ball glide across a chequered floor"


def _random_(module: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Fill every parameter and buffer in place with N(0, 0.02) (timing does not depend on the values; ``to_empty``
    leaves buffers such as the learned positional embedding uninitialised)."""
    g = torch.Generator(device=next(module.parameters()).device).manual_seed(seed)
    with torch.no_grad():
        for p in (*module.parameters(), *module.buffers()):
            if p.is_floating_point():
                p.normal_(0.0, 0.02, generator=g)
    return module


class Parts:
    """Fresh components of one size (full on CUDA, tiny on CPU) for each pipeline built: memory modes hook them."""

    def __init__(self, tiny: bool, device: torch.device, dtype: torch.dtype, workdir: Path):
        self.tiny, self.device, self.dtype, self.workdir = tiny, device, dtype, workdir
        save_tiny_t5(workdir)
        self.tokenizer = AutoTokenizer.from_pretrained(workdir / "tokenizer")
        self.config = FULL_TRANSFORMER if not tiny else tiny_cogvideox_transformer_config(
            in_channels=8, out_channels=4, use_learned_positional_embeddings=True,
            sample_height=6, sample_width=8, sample_frames=9)

    def _encoder_and_vae(self) -> tuple[T5EncoderModel, AutoencoderKLCogVideoX]:
        if self.tiny:
            vae = AutoencoderKLCogVideoX(
                down_block_types=("CogVideoXDownBlock3D",) * 4, up_block_types=("CogVideoXUpBlock3D",) * 4,
                block_out_channels=(8, 8, 8, 8), latent_channels=4, layers_per_block=1, norm_num_groups=2)
            return T5EncoderModel.from_pretrained(self.workdir / "text_encoder").eval(), vae.eval()
        t5 = T5Config(vocab_size=32128, d_model=4096, d_ff=10240, d_kv=64, num_heads=64, num_layers=1,
                      feed_forward_proj="gated-gelu", dropout_rate=0.0)
        return (_random_(T5EncoderModel(t5).to(self.dtype).eval(), 1),
                AutoencoderKLCogVideoX(**FULL_VAE).to(self.dtype).eval())

    def _dit(self, cls, seed: int):
        with torch.device("meta"):
            model = cls.from_transformer_config(self.config) if cls is TrajectoryControlNet else cls(**self.config)
        return _random_(model.to_empty(device="cpu").to(self.dtype), seed).eval()

    def stock(self) -> CogVideoXImageToVideoPipeline:
        text_encoder, vae = self._encoder_and_vae()
        return CogVideoXImageToVideoPipeline(
            tokenizer=self.tokenizer, text_encoder=text_encoder, vae=vae,
            transformer=self._dit(CogVideoXTransformer3DModel, 2), scheduler=CogVideoXDDIMScheduler(**I2V_SCHEDULER))

    def ours(self) -> MagicMotionPipeline:
        text_encoder, vae = self._encoder_and_vae()
        return MagicMotionPipeline(
            tokenizer=self.tokenizer, text_encoder=text_encoder, vae=vae,
            transformer=self._dit(MagicMotionTransformer3DModel, 2), controlnet=self._dit(TrajectoryControlNet, 3),
            scheduler=CogVideoXDPMScheduler(**I2V_SCHEDULER))

    @property
    def size(self) -> tuple[int, int, int]:
        c = self.config
        return c["sample_frames"], c["sample_height"] * 8, c["sample_width"] * 8


def _inputs(frames: int, height: int, width: int) -> tuple[PIL.Image.Image, list[PIL.Image.Image]]:
    rng = np.random.default_rng(0)
    image = PIL.Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8))
    maps = []
    for j in range(frames):  # a box outline moving right, the authors' drawing colour of entity 1
        frame = np.zeros((height, width, 3), np.uint8)
        x = width // 4 + j * width // (2 * frames)
        frame[height // 3:height // 3 + 4, x:x + width // 5] = (128, 32, 32)
        maps.append(PIL.Image.fromarray(frame))
    return image, maps


def run(pipe, label: str, steps: int, parts: Parts, mode: str, with_maps: bool) -> dict:
    """Time one generation: per-step times from the step callback, total wall time, peak VRAM."""
    frames, height, width = parts.size
    image, maps = _inputs(frames, height, width)
    cuda = parts.device.type == "cuda"
    applied = apply_memory_mode(pipe, mode, parts.device, group_offload=group_offload)
    pipe.vae.enable_tiling()
    pipe.set_progress_bar_config(disable=True)
    stamps: list[float] = []

    def on_step(_pipe, i, t, kwargs):
        if cuda:
            torch.cuda.synchronize()
        stamps.append(time.perf_counter())
        return kwargs

    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    kwargs = dict(image=image, prompt=PROMPT, height=height, width=width, num_frames=frames, num_inference_steps=steps,
                  guidance_scale=6.0, generator=torch.Generator().manual_seed(0), callback_on_step_end=on_step,
                  output_type="np", max_sequence_length=parts.config["max_text_seq_length"])
    if with_maps:
        kwargs["trajectory_maps"] = maps
    start = time.perf_counter()
    pipe(**kwargs)
    if cuda:
        torch.cuda.synchronize()
    total = time.perf_counter() - start
    per_step = statistics.median(np.diff(stamps)) if steps > 1 else stamps[0] - start
    fixed = total - steps * per_step  # prompt, image and map encoding + decoding
    peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else float("nan")
    return dict(label=label, mode=applied, per_step=per_step, total=total, total50=fixed + 50 * per_step, peak=peak)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="CPU smoke run with tiny weights")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--modes", default="resident,model_offload,group_offload,sequential_offload")
    args = parser.parse_args(argv)
    diffusers_logging.set_verbosity_error()
    cuda = torch.cuda.is_available() and not args.tiny
    device = torch.device("cuda" if cuda else "cpu")
    dtype = torch.bfloat16 if cuda else torch.float32
    modes = args.modes.split(",") if cuda else ["resident"]  # offload modes need CUDA
    with tempfile.TemporaryDirectory() as tmp:
        parts = Parts(not cuda, device, dtype, Path(tmp))
        rows = [run(parts.stock(), "stock I2V", args.steps, parts, "resident", with_maps=False)]
        for mode in modes:
            rows.append(run(parts.ours(), "MagicMotion", args.steps, parts, mode, with_maps=True))
    base = rows[0]
    frames, height, width = parts.size
    print(f"device {torch.cuda.get_device_name() if cuda else 'cpu (tiny smoke run)'}, {dtype}, "
          f"{frames}x{height}x{width}, {args.steps} steps, CFG 6")
    print(f"{'pipeline':<12} {'mode':<19} {'s/step':>8} {'x stock':>8} {'total s':>8} {'x stock':>8} "
          f"{'50-step s':>9} {'peak GiB':>9} {'x stock':>8}")
    for r in rows:
        print(f"{r['label']:<12} {r['mode']:<19} {r['per_step']:8.3f} {r['per_step'] / base['per_step']:8.2f} "
              f"{r['total']:8.2f} {r['total'] / base['total']:8.2f} {r['total50']:9.1f} {r['peak']:9.2f} "
              f"{r['peak'] / base['peak']:8.2f}")
    ours = {r["mode"]: r for r in rows[1:]}
    if "resident" in ours:
        print(f"goal resident per-step <= 2.1x stock: {ours['resident']['per_step'] / base['per_step']:.2f}x")
    if "resident" in ours and "sequential_offload" in ours:
        speedup = ours["sequential_offload"]["total50"] / ours["resident"]["total50"]
        print(f"goal resident >= 1.5x faster than the authors' sequential offload (50 steps): {speedup:.2f}x")
    fits = [f"{m} {r['peak']:.1f} GiB" for m, r in ours.items() if r["peak"] < 23 * 1e9 / 2**30]
    if cuda:
        print(f"goal a mode under 23 GB peak: {', '.join(fits) or 'none'}")


if __name__ == "__main__":
    main()
