"""TrajectoryCrafter benchmark: point-cloud re-projection, per-step time against stock CogVideoX, peak VRAM per mode.

    python bench/trajectorycrafter.py            # CUDA: full size, random weights, bf16
    python bench/trajectorycrafter.py --tiny     # CPU smoke test of the same code with tiny models
    python bench/trajectorycrafter.py --warp-only  # the re-projection figure alone

1. Re-projection: 49 source frames at 1024×576 (a floor, sky at infinity, three boxes) re-projected to the native
   672×384 as the conditioning does it (thinned to one point per output pixel, then z-buffered splat), seconds (the
   issue's goal: ≤ 2 s on the 2-core CPU, ≤ 0.1 s on a GPU); also the splat at full source density.
2. Per denoising step (CFG batch 2): TrajectoryCrafter's transformer (33 input channels, 21 Perceivers over 3,024
   reference tokens) against stock ``CogVideoXTransformer3DModel`` (CogVideoX-5B config) at the same token count
   (13 × 24 × 42 video tokens, 384×672×49), both in the same process; printed as a ratio (goal ≤ 1.15).
3. CUDA only: the whole pipeline (random T5-XXL, VAE, transformer) for 2 steps in each memory mode: peak VRAM and
   seconds (goal: a mode under 24 GB).
"""

from __future__ import annotations

import argparse
import gc
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "backend"))

from trajplate.conditioning.trajectorycrafter import render_point_clouds, splat  # noqa: E402
from trajplate.pipelines.trajectorycrafter.transformer import TrajectoryCrafterTransformer3DModel  # noqa: E402

FULL = dict(num_attention_heads=48, attention_head_dim=64, in_channels=33, out_channels=16, time_embed_dim=512,
            text_embed_dim=4096, num_layers=42, sample_width=84, sample_height=48, sample_frames=49,
            use_rotary_positional_embeddings=True)
CROSS = dict(is_train_cross=True, cross_attn_in_channels=16, cross_attn_interval=2, cross_attn_dim_head=128,
             cross_attn_num_heads=16)
TINY = dict(num_attention_heads=2, attention_head_dim=16, in_channels=9, out_channels=4, time_embed_dim=2,
            text_embed_dim=32, num_layers=2, sample_width=84, sample_height=48, sample_frames=49,
            use_rotary_positional_embeddings=True, max_text_seq_length=16)
TINY_CROSS = dict(is_train_cross=True, cross_attn_in_channels=4, cross_attn_dim_head=16, cross_attn_num_heads=2)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def warp_scene(frames: int, size: tuple[int, int], out: tuple[int, int]) -> tuple[np.ndarray, ...]:
    """A shot-like source as the conditioning receives it: uint8 frames of random colour; depth of a floor receding to
    a sky at infinity with three boxes in front (depth edges); the redirect camera dollies 0.5 m right and pans 10°
    over the frames. Returns (rgb, depth, src_w2c, src_K, dst_w2c, dst_K)."""
    w, h = size
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (frames, h, w, 3), dtype=np.uint8)
    ys = np.arange(h, dtype=np.float32)[:, None] + 0.5
    with np.errstate(divide="ignore"):
        floor = 1.6 * 500.0 / (ys - h / 2)  # camera 1.6 m above a floor, f = 500 px
    depth = np.broadcast_to(np.where(ys > h / 2 + 4, floor, np.inf), (h, w)).astype(np.float32)
    for x0, x1, y0, y1, z in ((0.1, 0.3, 0.3, 0.8, 3.0), (0.45, 0.6, 0.4, 0.9, 5.0), (0.7, 0.95, 0.2, 0.7, 8.0)):
        depth[int(y0 * h):int(y1 * h), int(x0 * w):int(x1 * w)] = z
    K = np.broadcast_to(np.array([[500.0, 0, w / 2], [0, 500.0, h / 2], [0, 0, 1]]), (frames, 3, 3))
    src = np.broadcast_to(np.eye(4), (frames, 4, 4))
    angle = np.linspace(0, math.radians(10), frames)
    dst = np.tile(np.eye(4), (frames, 1, 1))
    dst[:, 0, 0], dst[:, 0, 2], dst[:, 2, 0], dst[:, 2, 2] = np.cos(angle), np.sin(angle), -np.sin(angle), np.cos(angle)
    dst[:, 0, 3] = -np.linspace(0, 0.5, frames)
    dst_K = np.diag([out[0] / w, out[1] / h, 1.0]) @ K
    contiguous = np.ascontiguousarray
    return rgb, contiguous(np.broadcast_to(depth, (frames, h, w))), contiguous(src), contiguous(K), dst, dst_K


def bench_warp(device: torch.device, frames: int = 49, size=(1024, 576), out=(672, 384),
               repeats: int = 3) -> dict[str, float]:
    """Seconds for ``frames`` source frames at ``size`` re-projected to the native ``out`` size: the conditioning's
    stage (``render_point_clouds``: thinned to the output's density, then splatted), the splat alone at full source
    density, and a baseline (one elementwise multiply over the float source frames: a yardstick of how fast the
    shared machine is right now)."""
    rgb, depth, src, K, dst, dst_K = warp_scene(frames, size, out)
    tensors = [torch.from_numpy(np.ascontiguousarray(a)).to(device) for a in (rgb, depth, src, K, dst, dst_K)]
    tensors[0] = tensors[0].permute(0, 3, 1, 2).float() / 255.0
    render_point_clouds(rgb[:2], depth[:2], src[:2], K[:2], dst[:2], dst_K[:2], out, device)  # warm-up
    runs = {"baseline": lambda: tensors[0] * 2.0,
            "reprojection": lambda: render_point_clouds(rgb, depth, src, K, dst, dst_K, out, device),
            "splat_full_density": lambda: splat(*tensors, out)}
    best = dict.fromkeys(runs, float("inf"))
    for _ in range(repeats):
        for name, run in runs.items():
            sync(device)
            t0 = time.perf_counter()
            run()
            sync(device)
            best[name] = min(best[name], time.perf_counter() - t0)
    return best


def random_model(cls, config: dict, device: torch.device, dtype: torch.dtype):
    with torch.device("meta"):
        model = cls(**config)
    model = model.to_empty(device=device)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.02)
    return model.to(dtype).eval()


def step_seconds(model, tiny: bool, device, dtype, cross: bool, repeats: int) -> float:
    from diffusers.models.embeddings import get_3d_rotary_pos_embed

    cfg = model.config
    text_dim, text_len = (32, 16) if tiny else (4096, 226)
    latent = torch.randn(2, 13, 16 if not tiny else 4, 48, 84, device=device, dtype=dtype)
    kwargs = dict(hidden_states=latent, encoder_hidden_states=torch.randn(2, text_len, text_dim, device=device,
                                                                         dtype=dtype),
                  timestep=torch.tensor([999, 999], device=device),
                  image_rotary_emb=get_3d_rotary_pos_embed(cfg.attention_head_dim, ((0, 0), (24, 42)), (24, 42), 13,
                                                           device=device))
    if cross:
        kwargs["inpaint_latents"] = torch.randn(2, 13, latent.shape[2] + 1, 48, 84, device=device, dtype=dtype)
        kwargs["cross_latents"] = torch.randn(2, 3, latent.shape[2], 48, 84, device=device, dtype=dtype)
    else:
        kwargs["hidden_states"] = torch.cat([latent, torch.randn_like(latent), latent[:, :, :1]], 2) if \
            cfg.in_channels > latent.shape[2] else latent
    with torch.no_grad():
        model(**kwargs)
        best = float("inf")
        for _ in range(repeats):
            sync(device)
            t0 = time.perf_counter()
            model(**kwargs)
            sync(device)
            best = min(best, time.perf_counter() - t0)
    return best


def bench_steps(tiny: bool, device: torch.device, dtype: torch.dtype, repeats: int) -> tuple[float, float]:
    from diffusers import CogVideoXTransformer3DModel

    base = TINY if tiny else FULL
    stock_config = {**base, "in_channels": base["out_channels"]}
    stock = random_model(CogVideoXTransformer3DModel, stock_config, device, dtype)
    t_stock = step_seconds(stock, tiny, device, dtype, cross=False, repeats=repeats)
    del stock
    gc.collect()
    crafter = random_model(TrajectoryCrafterTransformer3DModel, {**base, **(TINY_CROSS if tiny else CROSS)}, device,
                           dtype)
    t_crafter = step_seconds(crafter, tiny, device, dtype, cross=True, repeats=repeats)
    return t_stock, t_crafter


def bench_memory_modes(device: torch.device) -> None:
    """Whole pipeline, random weights, 2 steps per memory mode; peak VRAM (needs CUDA)."""
    from diffusers import AutoencoderKLCogVideoX, DDIMScheduler
    from trajplate.pipelines.common import apply_memory_mode
    from trajplate.pipelines.tiny_parts import save_tiny_t5
    from trajplate.pipelines.trajectorycrafter.pipeline import TrajectoryCrafterPipeline
    from transformers import AutoTokenizer, T5Config, T5EncoderModel

    dtype = torch.bfloat16
    with tempfile.TemporaryDirectory() as tmp:
        save_tiny_t5(Path(tmp))  # an offline tokenizer; the encoder below has T5-XXL's size
        tokenizer = AutoTokenizer.from_pretrained(Path(tmp) / "tokenizer")
    t5_xxl = T5Config(d_model=4096, d_ff=10240, d_kv=64, num_heads=64, num_layers=24, vocab_size=32128,
                      feed_forward_proj="gated-gelu")
    for mode in ("resident", "model_offload", "group_offload", "sequential_offload"):
        with torch.device("meta"):
            text = T5EncoderModel(t5_xxl)
        text = text.to_empty(device="cpu").to(dtype)
        vae = AutoencoderKLCogVideoX().to(dtype)
        transformer = random_model(TrajectoryCrafterTransformer3DModel, {**FULL, **CROSS}, torch.device("cpu"), dtype)
        pipe = TrajectoryCrafterPipeline(tokenizer, text, vae, transformer, DDIMScheduler())
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        apply_memory_mode(pipe, mode, device)
        if mode != "resident":
            vae.enable_tiling()
        render = torch.rand(49, 384, 672, 3)
        holes = torch.rand(49, 384, 672) > 0.7
        t0 = time.perf_counter()
        pipe(render, holes, render[:10], "a street", num_inference_steps=2,
             generator=torch.Generator(device).manual_seed(0))
        sync(device)
        print(f"memory mode {mode:<18} peak {torch.cuda.max_memory_allocated(device) / 2**30:6.1f} GiB  "
              f"2 steps + decode {time.perf_counter() - t0:6.1f} s")
        del pipe, text, vae, transformer
        gc.collect()
        torch.cuda.empty_cache()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="CPU smoke test with tiny models")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warp-only", action="store_true", help="only the re-projection figure")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() and not args.tiny else "cpu")
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    print(f"device {device} ({torch.get_num_threads()} CPU threads), dtype {dtype}, torch {torch.__version__}")
    warp = bench_warp(device, repeats=1 if args.tiny else args.repeats)
    goal = 0.1 if device.type == "cuda" else 2.0
    print(f"re-projection 49 × 1024×576 -> 672×384: {warp['reprojection']:.3f} s (goal ≤ {goal} s on {device.type}); "
          f"splat at full source density {warp['splat_full_density']:.3f} s; baseline multiply over the frames "
          f"{warp['baseline']:.3f} s (re-projection / baseline {warp['reprojection'] / warp['baseline']:.0f}×)")
    if args.warp_only:
        return
    t_stock, t_crafter = bench_steps(args.tiny, device, dtype, args.repeats)
    print(f"per step (CFG 2, 13×24×42 tokens): stock CogVideoX {t_stock:.3f} s, TrajectoryCrafter {t_crafter:.3f} s, "
          f"ratio {t_crafter / t_stock:.3f} (goal ≤ 1.15){'  [tiny models: ratio not meaningful]' if args.tiny else ''}")
    if device.type == "cuda":
        bench_memory_modes(device)
    else:
        print("peak VRAM per memory mode: needs CUDA (not measured)")


if __name__ == "__main__":
    main()
