"""3DTrajMaster speed and memory against stock diffusers CogVideoX in the same process (issue 6 goals).

    python bench/trajmaster3d.py                      # CUDA: full-size CogVideoX-5B shapes, random weights, bf16
    python bench/trajmaster3d.py --modes resident,model_offload,group_offload,sequential_offload --steps 6
    python bench/trajmaster3d.py --tiny               # CPU smoke run: tiny weights through the real loader

Per memory mode it runs the stock ``CogVideoXPipeline`` and ours (steps ``0..steps/2-1`` with the injector and the
LoRA, the rest plain) and prints seconds per step (median), the total (decode included) and the peak VRAM, each as
a ratio to stock. In resident mode it also runs the authors' two-transformer annealing (fused LoRA + plain deep copy)
and prints its peak VRAM and its distance from ours. Goals: plain steps <= 1.02x stock, injector steps <= 1.4x stock,
peak VRAM at least 10 GB below the two-copy scheme. Full-size weights are random (same shapes as the real ones); the
text encoder is a 1-layer T5 of the real width (the prompt encoder's cost is not what is measured here).
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "backend"))

from diffusers import (  # noqa: E402
    AutoencoderKLCogVideoX,
    CogVideoXDDIMScheduler,
    CogVideoXDPMScheduler,
    CogVideoXPipeline,
    CogVideoXTransformer3DModel,
)
from diffusers.utils import logging as diffusers_logging  # noqa: E402
from peft import LoraConfig  # noqa: E402
from trajplate.pipelines.tiny_parts import save_tiny_t5  # noqa: E402
from trajplate.pipelines.trajmaster3d.loading import INJECTOR_FOLDER, load_pipeline, save_tiny_weights  # noqa: E402
from trajplate.pipelines.trajmaster3d.pipeline import LORA_ADAPTER, TrajMaster3DPipeline  # noqa: E402
from trajplate.pipelines.trajmaster3d.trajpipeline import apply_memory_mode  # noqa: E402
from trajplate.pipelines.trajmaster3d.transformer import TrajMasterTransformer3DModel  # noqa: E402
from transformers import AutoTokenizer, T5Config, T5EncoderModel  # noqa: E402

# THUDM/CogVideoX-5b transformer/config.json (spec §0): 48 heads x 64, 42 layers, RoPE, 480x720x49.
FULL_CONFIG = dict(
    num_attention_heads=48, attention_head_dim=64, in_channels=16, out_channels=16, time_embed_dim=512,
    text_embed_dim=4096, num_layers=42, sample_width=90, sample_height=60, sample_frames=49, patch_size=2,
    max_text_seq_length=226, use_rotary_positional_embeddings=True,
)
LORA_RANK = 32  # the authors' LoRA: rank 32, alpha 32 on attn1's to_q/to_k/to_v/to_out.0
PROMPT = "a red car and a brown dog are moving in the desert"
ENTITIES = ["a red car with chrome wheels", "a brown dog with a white tail"]


class Parts:
    """Builds fresh pipelines (stock, ours, the authors' two copies) of one size, weights reproducible by seed."""

    def __init__(self, tiny: bool, dtype: torch.dtype, workdir: Path):
        self.tiny, self.dtype, self.workdir = tiny, dtype, workdir
        if tiny:
            save_tiny_weights(workdir, sample_height=8, sample_width=12, sample_frames=9)
        else:
            save_tiny_t5(workdir)  # only its offline tokenizer is used

    def _base(self) -> dict:
        if self.tiny:
            base = CogVideoXPipeline.from_pretrained(self.workdir / "base", transformer=None, dtype=self.dtype)
            return {k: getattr(base, k) for k in ("tokenizer", "text_encoder", "vae", "scheduler")}
        torch.manual_seed(0)
        tokenizer = AutoTokenizer.from_pretrained(self.workdir / "tokenizer")
        text_encoder = T5EncoderModel(T5Config(
            vocab_size=64, d_model=4096, d_ff=256, d_kv=64, num_heads=2, num_layers=1, feed_forward_proj="relu",
        )).eval().to(self.dtype)
        vae = AutoencoderKLCogVideoX(scaling_factor=0.7).eval().to(self.dtype)
        scheduler = CogVideoXDDIMScheduler(
            beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, clip_sample=False,
            prediction_type="v_prediction", rescale_betas_zero_snr=True, timestep_spacing="trailing",
        )
        return dict(tokenizer=tokenizer, text_encoder=text_encoder, vae=vae, scheduler=scheduler)

    def _random(self, cls):
        torch.manual_seed(1)
        previous = torch.get_default_dtype()
        torch.set_default_dtype(self.dtype)
        try:
            return cls(**FULL_CONFIG).eval()
        finally:
            torch.set_default_dtype(previous)

    def stock(self) -> CogVideoXPipeline:
        if self.tiny:
            transformer = CogVideoXTransformer3DModel.from_pretrained(
                self.workdir / "adapter" / INJECTOR_FOLDER, dtype=self.dtype
            )
        else:
            transformer = self._random(CogVideoXTransformer3DModel)
        pipe = CogVideoXPipeline(transformer=transformer, **self._base())
        pipe.scheduler = CogVideoXDPMScheduler.from_config(pipe.scheduler.config, timestep_spacing="trailing")
        return pipe

    def ours(self, two_copies: bool = False) -> TrajMaster3DPipeline:
        if self.tiny:
            return load_pipeline(self.workdir / "base", self.workdir / "adapter", dtype=self.dtype,
                                 annealing="two_copies" if two_copies else "adapter_switch")
        transformer = self._random(TrajMasterTransformer3DModel)
        plain_copy = copy.deepcopy(transformer) if two_copies else None
        transformer.add_adapter(
            LoraConfig(r=LORA_RANK, lora_alpha=LORA_RANK, init_lora_weights=False,
                       target_modules=r".*\.attn1\.(to_q|to_k|to_v|to_out\.0)"),
            adapter_name=LORA_ADAPTER,
        )
        if plain_copy is not None:
            transformer.fuse_lora(lora_scale=0.6)
            transformer.delete_adapters(LORA_ADAPTER)
        pipe = TrajMaster3DPipeline(transformer=transformer, **self._base())
        pipe.configure_scheduler()
        pipe.transformer_ori = plain_copy
        return pipe


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run(pipe, device: torch.device, steps: int, ours: bool, seed: int = 0) -> dict:
    """One generation; per-step seconds, total seconds (decode included), peak VRAM bytes (0 on the CPU)."""
    stamps: list[float] = []

    def on_step(pipeline, index, timestep, tensors):
        _sync(device)
        stamps.append(time.perf_counter())
        return {}

    common = dict(num_inference_steps=steps, guidance_scale=6.0, use_dynamic_cfg=True, output_type="np",
                  generator=torch.Generator().manual_seed(seed), callback_on_step_end=on_step)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    _sync(device)
    start = time.perf_counter()
    if ours:
        poses = torch.zeros(1, len(ENTITIES), pipe.latent_frames, 12)
        poses[..., [0, 4, 8]] = 1.0  # identity rotation
        poses[..., 11] = 7.0  # 7 m in front of the camera
        frames = pipe(PROMPT, ENTITIES, poses, annealed_sample_step=steps // 2 - 1, **common).frames
    else:
        frames = pipe(prompt=PROMPT, **common).frames
    _sync(device)
    total = time.perf_counter() - start
    step_times = [b - a for a, b in zip([start, *stamps[:-1]], stamps, strict=True)]
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else 0
    return {"steps": step_times, "total": total, "peak": peak, "frames": frames}


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def bench_mode(parts: Parts, mode: str, device: torch.device, steps: int) -> None:
    results = {}
    for name in ("stock", "ours"):
        pipe = parts.stock() if name == "stock" else parts.ours()
        pipe.set_progress_bar_config(disable=True)
        apply_memory_mode(pipe, mode, device)
        run(pipe, device, 2, ours=name == "ours")  # warm-up (kernels, offload hooks)
        results[name] = run(pipe, device, steps, ours=name == "ours")
        del pipe
        if device.type == "cuda":
            torch.cuda.empty_cache()
    stock, ours = results["stock"], results["ours"]
    split = steps // 2
    stock_step = _median(stock["steps"][1:])  # the first step also encodes the prompts
    injector_step, plain_step = _median(ours["steps"][1:split]), _median(ours["steps"][split:])
    gib = 1024**3
    print(f"\n[{mode}] {steps} steps, {split} with the injector")
    print(f"  stock step            {stock_step:8.3f} s")
    print(f"  ours injector step    {injector_step:8.3f} s   x{injector_step / stock_step:.3f}   (goal <= 1.4)")
    print(f"  ours plain step       {plain_step:8.3f} s   x{plain_step / stock_step:.3f}   (goal <= 1.02)")
    print(f"  total                 {ours['total']:8.2f} s   x{ours['total'] / stock['total']:.3f}  "
          f"(stock {stock['total']:.2f} s)")
    if device.type == "cuda":
        print(f"  peak VRAM             {ours['peak'] / gib:8.2f} GiB x{ours['peak'] / stock['peak']:.3f}  "
              f"(stock {stock['peak'] / gib:.2f} GiB)")


def bench_two_copies(parts: Parts, device: torch.device, steps: int) -> None:
    outputs, peaks, resident = {}, {}, {}
    for name, two in (("one transformer", False), ("two copies", True)):
        pipe = parts.ours(two_copies=two)
        apply_memory_mode(pipe, "resident", device)
        modules = [pipe.transformer, pipe.transformer_ori]
        resident[name] = sum(p.numel() * p.element_size() for m in modules if m is not None for p in m.parameters())
        result = run(pipe, device, steps, ours=True)
        outputs[name], peaks[name] = result["frames"], result["peak"]
        del pipe
        if device.type == "cuda":
            torch.cuda.empty_cache()
    gib = 1024**3
    difference = abs(outputs["one transformer"] - outputs["two copies"]).max()
    print(f"\n[annealing, resident, {parts.dtype}] ours (PEFT adapter switched off) vs the authors' two copies")
    mib = 1024**2
    print(f"  transformer weights   {resident['one transformer'] / mib:.1f} vs {resident['two copies'] / mib:.1f} MiB")
    if device.type == "cuda":
        saved = (peaks["two copies"] - peaks["one transformer"]) / gib
        print(f"  peak VRAM             {peaks['one transformer'] / gib:.2f} vs {peaks['two copies'] / gib:.2f} GiB, "
              f"{saved:.2f} GiB less (goal >= 10 GB less)")
    print(f"  max |difference| of the decoded videos (0..1): {difference:.2e}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="CPU smoke run with tiny weights")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--modes", default="resident,model_offload,group_offload")
    args = parser.parse_args(argv)
    diffusers_logging.set_verbosity_error()

    device = torch.device("cpu" if args.tiny or not torch.cuda.is_available() else "cuda")
    if device.type == "cpu" and not args.tiny:
        sys.exit("no CUDA device: full-size runs need a GPU; use --tiny for the CPU smoke run")
    modes = ["resident"] if args.tiny else args.modes.split(",")
    with tempfile.TemporaryDirectory() as workdir:
        dtypes = (torch.float32, torch.bfloat16) if args.tiny else (torch.bfloat16,)
        for index, dtype in enumerate(dtypes):
            parts = Parts(args.tiny, dtype, Path(workdir) / str(index))
            print(f"3DTrajMaster bench on {device} ({'tiny' if args.tiny else 'full-size random'} weights, {dtype})")
            if dtype == dtypes[0]:
                for mode in modes:
                    bench_mode(parts, mode, device, args.steps)
            bench_two_copies(parts, device, args.steps)


if __name__ == "__main__":
    main()
