"""TrajectoryCrafter benchmark: point-cloud re-projection, per-step time against stock CogVideoX, peak VRAM per mode.

    python bench/trajectorycrafter.py            # CUDA: full size, random weights, bf16
    python bench/trajectorycrafter.py --tiny     # CPU smoke test of the same code with tiny models

1. Re-projection: 49 frames splatted at 1024×576 → 1024×576 (the issue's goal: ≤ 2 s on the 2-core CPU, ≤ 0.1 s on a
   GPU), seconds.
2. Per denoising step (CFG batch 2): TrajectoryCrafter's transformer (33 input channels, 21 Perceivers over 3,024
   reference tokens) against stock ``CogVideoXTransformer3DModel`` (CogVideoX-5B config) at the same token count
   (13 × 24 × 42 video tokens, 384×672×49), both in the same process; printed as a ratio (goal ≤ 1.15).
3. CUDA only: the whole pipeline (random T5-XXL, VAE, transformer) for 2 steps in each memory mode: peak VRAM and
   seconds (goal: a mode under 24 GB).
"""

from __future__ import annotations

import argparse
import gc
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "backend"))

from trajplate.conditioning.trajectorycrafter import splat  # noqa: E402
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


def bench_warp(device: torch.device, frames: int = 49, size=(1024, 576), repeats: int = 3) -> tuple[float, float]:
    """(re-projection seconds, baseline seconds): the baseline is one elementwise multiply over the same frames, a
    memory-bound yardstick of how fast this machine is right now (shared CPUs vary by an order of magnitude)."""
    w, h = size
    g = torch.Generator().manual_seed(0)
    rgb = torch.rand(frames, 3, h, w, generator=g).to(device)
    depth = (torch.rand(frames, h, w, generator=g) * 8 + 1).to(device)
    K = torch.tensor([[500.0, 0, w / 2], [0, 500.0, h / 2], [0, 0, 1]], dtype=torch.float64).expand(frames, 3, 3)
    src = torch.eye(4, dtype=torch.float64).expand(frames, 4, 4).clone()
    dst = src.clone()
    dst[:, 0, 3] = torch.linspace(0, 0.5, frames, dtype=torch.float64)
    args = [x.to(device) for x in (src, K, dst, K)]
    splat(rgb[:2], depth[:2], *[a[:2] for a in args], (w, h))  # warm-up (kernels, allocator)
    best, baseline = float("inf"), float("inf")
    for _ in range(repeats):
        sync(device)
        t0 = time.perf_counter()
        rgb * 2.0
        sync(device)
        t1 = time.perf_counter()
        splat(rgb, depth, *args, (w, h))
        sync(device)
        best, baseline = min(best, time.perf_counter() - t1), min(baseline, t1 - t0)
    return best, baseline


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
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() and not args.tiny else "cpu")
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    print(f"device {device} ({torch.get_num_threads()} CPU threads), dtype {dtype}, torch {torch.__version__}")
    warp, baseline = bench_warp(device, repeats=1 if args.tiny else args.repeats)
    goal = 0.1 if device.type == "cuda" else 2.0
    print(f"re-projection 49 × 1024×576: {warp:.3f} s (goal ≤ {goal} s on {device.type}; ratio to goal {warp / goal:.2f}); "
          f"baseline multiply over the frames {baseline:.3f} s, ratio {warp / baseline:.0f}×")
    t_stock, t_crafter = bench_steps(args.tiny, device, dtype, args.repeats)
    print(f"per step (CFG 2, 13×24×42 tokens): stock CogVideoX {t_stock:.3f} s, TrajectoryCrafter {t_crafter:.3f} s, "
          f"ratio {t_crafter / t_stock:.3f} (goal ≤ 1.15){'  [tiny models: ratio not meaningful]' if args.tiny else ''}")
    if device.type == "cuda":
        bench_memory_modes(device)
    else:
        print("peak VRAM per memory mode: needs CUDA (not measured)")


if __name__ == "__main__":
    main()
