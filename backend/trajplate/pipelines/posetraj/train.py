"""``trajplate posetraj-train``: fine-tune a Traj-ControlNet on SVD img2vid with diffusers + accelerate.

What we reproduce (spec §3.5, the authors' lineage of SVD fine-tuning scripts): only the ControlNet trains (SVD's UNet,
VAE and CLIP image encoder are frozen); a new ControlNet starts as a copy of the UNet encoder (``from_unet``) with
zero-initialised output convs; the objective is SVD's EDM v-prediction loss: log-normal σ (P_mean 0.7, P_std 1.6),
``x_σ = x_0 + σ·ε``, UNet input ``x_σ / √(σ² + 1)`` concatenated with the first frame's VAE latent (posterior mode,
first frame noised by 0.02), ``t = ¼ ln σ``, ``D = c_skip·x_σ + c_out·F`` with ``c_skip = 1/(σ² + 1)``,
``c_out = −σ/√(σ² + 1)``, loss ``mean((σ² + 1)/σ² · (D − x_0)²)``; target latents are VAE posterior *samples* ×
``scaling_factor``; added time ids fps 6, motion bucket 128, noise aug 0.02 (what the pipeline forces at sampling);
AdamW (β 0.9/0.999, weight decay 1e-2, ε 1e-8), gradient clipping at 1.0; lr 1e-5, batch 1, gradient accumulation 2
(``start_*.sh``). Conditioning dropout (image embedding / first-frame latent, 10 % each) follows the SVD fine-tuning
lineage; the camera vector is zeroed with probability 0.5 (``cam_mask_ratio``).

What the spec leaves open, and our choice: the LR schedule (constant, no warm-up), the seeds (every σ, ε and
dropout draw comes from a generator seeded by (seed, step, micro-batch), so a resumed run draws what an uninterrupted
one would), and the data order (a fresh permutation of the clips per epoch from ``seed``).

Output: ``OUT/checkpoint-<step>/`` (accelerate state: optimizer, LR scheduler, RNG; the ControlNet as a diffusers
folder ``controlnet/``, the authors' checkpoint layout, so the pipeline loads a checkpoint folder directly),
``OUT/controlnet/`` at the end, and ``OUT/train_log.jsonl`` (one ``{"step", "loss", "lr"}`` line per step).
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import ProjectConfiguration
from diffusers.optimization import get_scheduler
from diffusers.pipelines.stable_video_diffusion.pipeline_stable_video_diffusion import _resize_with_antialiasing

from .data import PoseTrajClips, collate
from .loading import load_controlnet, load_unet, weight_variant
from .models import CAMERA_DIM, ControlNetSDVModel
from .pipeline import ADDED_TIME_FPS, MOTION_BUCKET_ID, NOISE_AUG_STRENGTH, StableVideoDiffusionPipelineControlNet

P_MEAN, P_STD = 0.7, 1.6
CONDITIONING_DROPOUT = 0.1
CAMERA_DROPOUT = 0.5
CHECKPOINT = re.compile(r"checkpoint-(\d+)$")
PRECISIONS = {"no": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


@dataclass
class TrainOptions:
    """steps: optimizer steps in total (a resumed run continues up to it). size: (W, H) training resolution."""

    steps: int = 1000
    lr: float = 1e-5
    grad_accum: int = 2
    batch: int = 1
    mixed_precision: str = "no"
    gradient_checkpointing: bool = False
    resume: bool = False
    checkpointing_steps: int = 500
    size: tuple[int, int] = (576, 320)
    camera: bool = False
    seed: int = 0
    workers: int = 0

    def __post_init__(self) -> None:
        for name in ("steps", "grad_accum", "batch", "checkpointing_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: must be ≥ 1; got {getattr(self, name)}")
        if self.mixed_precision not in PRECISIONS:
            raise ValueError(f"mixed_precision: {self.mixed_precision!r}; valid: {', '.join(PRECISIONS)}")
        if self.size[0] % 64 or self.size[1] % 64:
            raise ValueError(f"size: {self.size[0]}x{self.size[1]} must be multiples of 64 (SVD's UNet halves the "
                             "1/8 latent three times)")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr: must be a positive number; got {self.lr}")


@dataclass
class TrainResult:
    """start_step: the step resumed from (0 for a fresh run); losses: (step, loss) of the steps this run made;
    step_times: ``time.perf_counter()`` at the end of each of those steps."""

    start_step: int
    losses: list[tuple[int, float]] = field(default_factory=list)
    step_times: list[float] = field(default_factory=list)
    controlnet_dir: Path | None = None


def latest_checkpoint(out_dir: Path) -> tuple[Path, int] | None:
    """The ``checkpoint-<step>`` folder of ``out_dir`` with the highest step, or None."""
    found = [(int(m.group(1)), p) for p in Path(out_dir).glob("checkpoint-*") if (m := CHECKPOINT.search(p.name))]
    if not found:
        return None
    step, path = max(found)
    return path, step


def _order(count: int, seed: int, start: int) -> Iterator[int]:
    """Clip indices from position ``start`` of the endless sequence of per-epoch permutations."""
    epoch, offset = divmod(start, count)
    while True:
        perm = torch.randperm(count, generator=torch.Generator().manual_seed(seed * 100_003 + epoch)).tolist()
        yield from perm[offset:]
        epoch, offset = epoch + 1, 0


class _Sampler(torch.utils.data.Sampler):
    def __init__(self, count: int, seed: int, start: int):
        self.count, self.seed, self.start = count, seed, start

    def __iter__(self) -> Iterator[int]:
        return _order(self.count, self.seed, self.start)


def _components(base_dir: Path, init: Path | None, camera: bool, dtype: torch.dtype):
    """(pipeline with frozen modules in ``dtype``, trainable float32 ControlNet)."""
    unet = load_unet(base_dir, torch.float32)
    if init is not None:
        controlnet = load_controlnet(init, torch.float32)
        if bool(controlnet.config.camera_dim) != camera:
            raise ValueError(f"controlnet: {init} is {'a' if controlnet.config.camera_dim else 'not a'} camera "
                             f"ControlNet; {'drop' if controlnet.config.camera_dim else 'add'} --camera to match")
    else:
        controlnet = ControlNetSDVModel.from_unet(unet, camera_dim=CAMERA_DIM if camera else 0)
    pipe = StableVideoDiffusionPipelineControlNet.from_pretrained(
        base_dir, unet=unet, controlnet=controlnet, variant=weight_variant(base_dir))
    for module in (pipe.vae, pipe.image_encoder, pipe.unet):
        module.requires_grad_(False).to(dtype)
    controlnet.train()
    return pipe, controlnet


def _checkpoint_hooks(accelerator: Accelerator) -> None:
    """Checkpoints hold the ControlNet as ``controlnet/`` (diffusers format) instead of accelerate's pickle."""

    def save(models, weights, output_dir):
        if accelerator.is_main_process:
            for model in models:
                accelerator.unwrap_model(model).save_pretrained(Path(output_dir) / "controlnet")
                weights.pop()

    def load(models, input_dir):
        model = accelerator.unwrap_model(models.pop())
        saved = load_controlnet(Path(input_dir) / "controlnet", torch.float32)
        model.load_state_dict(saved.state_dict())

    accelerator.register_save_state_pre_hook(save)
    accelerator.register_load_state_pre_hook(load)


def edm_loss(pipe: StableVideoDiffusionPipelineControlNet, controlnet, batch, generator: torch.Generator,
             *, camera: bool) -> torch.Tensor:
    """The EDM v-prediction loss of one batch (module docstring); scalar float32.

    batch: :class:`~.data.TrainingClip` with a leading B axis; generator: CPU generator for every random draw.
    """
    device = pipe.unet.device
    dtype = pipe.unet.dtype
    pixels = batch.pixel_values.to(device, dtype)  # (B, T, 3, H, W)
    bsz, frames = pixels.shape[:2]
    with torch.no_grad():
        latents = pipe.vae.encode(pixels.flatten(0, 1)).latent_dist.sample(generator=generator)
        latents = latents.unflatten(0, (bsz, frames)) * pipe.vae.config.scaling_factor
        first = pixels[:, 0]
        noised_first = first + NOISE_AUG_STRENGTH * torch.randn(first.shape, generator=generator).to(device, dtype)
        image_latents = pipe.vae.encode(noised_first).latent_dist.mode()
        clip_in = (_resize_with_antialiasing(first.float(), (224, 224)) + 1.0) / 2.0
        embeddings = torch.cat([pipe._encode_image(image[None], device, 1, False) for image in clip_in])

        keep = torch.rand(bsz, generator=generator).to(device)
        embeddings = embeddings * (keep >= 2 * CONDITIONING_DROPOUT)[:, None, None].to(dtype)
        image_keep = ~((keep >= CONDITIONING_DROPOUT) & (keep < 3 * CONDITIONING_DROPOUT))
        image_latents = image_latents * image_keep[:, None, None, None].to(dtype)

        sigmas = torch.exp(torch.randn(bsz, generator=generator) * P_STD + P_MEAN).to(device)
        sig = sigmas[:, None, None, None, None]
        noise = torch.randn(latents.shape, generator=generator).to(device, dtype)
        noisy = latents + noise * sig.to(dtype)
        unet_in = torch.cat([noisy / (sig**2 + 1).sqrt().to(dtype),
                             image_latents[:, None].expand(-1, frames, -1, -1, -1)], dim=2)
        time_ids = torch.tensor([[ADDED_TIME_FPS, MOTION_BUCKET_ID, NOISE_AUG_STRENGTH]] * bsz, device=device,
                                dtype=dtype)
        cam = None
        if camera:
            cam_keep = (torch.rand(bsz, generator=generator) >= CAMERA_DROPOUT).to(device)
            cam = batch.camera.to(device) * cam_keep[:, None, None]
    timesteps = 0.25 * sigmas.log()
    down, mid = controlnet(unet_in.float(), timesteps, embeddings.float(), time_ids.float(),
                           batch.maps.to(device), camera=cam, return_dict=False)
    pred = pipe.unet(unet_in, timesteps.to(dtype), embeddings, time_ids,
                     down_block_additional_residuals=[r.to(dtype) for r in down],
                     mid_block_additional_residual=mid.to(dtype)).sample
    c_skip, c_out = 1 / (sig**2 + 1), -sig / (sig**2 + 1).sqrt()
    denoised = pred.float() * c_out + c_skip * noisy.float()
    weight = (1 + sig**2) / sig**2
    return (weight * (denoised - latents.float()) ** 2).mean()


def train(data_dir: Path, base_dir: Path, out_dir: Path, options: TrainOptions, *, init: Path | None = None,
          log: Callable[[str], None] = print) -> TrainResult:
    """Fine-tune a Traj-ControlNet on the clips of ``data_dir`` (:mod:`.data` layout) from the SVD folder
    ``base_dir``; ``init``: a ControlNet folder to start from (default ``from_unet``). Writes ``out_dir`` (module
    docstring). Raises FileNotFoundError (no clips / base folder, ``resume`` without checkpoint), ValueError (options
    or an init ControlNet of the other variant), ControlNetFormatError (weights that do not match).
    """
    out_dir = Path(out_dir)
    resume_from = latest_checkpoint(out_dir) if options.resume else None
    if options.resume and resume_from is None:
        raise FileNotFoundError(f"{out_dir}: --resume, but there is no checkpoint-<step> folder; drop --resume")
    dataset = PoseTrajClips(data_dir, options.size)
    accelerator = Accelerator(gradient_accumulation_steps=options.grad_accum, mixed_precision=options.mixed_precision,
                              project_config=ProjectConfiguration(project_dir=str(out_dir)))
    pipe, controlnet = _components(base_dir, init, options.camera, PRECISIONS[options.mixed_precision])
    pipe.to(accelerator.device)
    if options.gradient_checkpointing:
        controlnet.enable_gradient_checkpointing()
        pipe.unet.enable_gradient_checkpointing()  # the loss reaches the ControlNet through the frozen UNet
    optimizer = torch.optim.AdamW(controlnet.parameters(), lr=options.lr, betas=(0.9, 0.999), weight_decay=1e-2,
                                  eps=1e-8)
    lr_scheduler = get_scheduler("constant", optimizer=optimizer)
    _checkpoint_hooks(accelerator)
    controlnet, optimizer, lr_scheduler = accelerator.prepare(controlnet, optimizer, lr_scheduler)
    start = 0
    if resume_from is not None:
        accelerator.load_state(str(resume_from[0]))
        start = resume_from[1]
        log(f"resumed from {resume_from[0]} at step {start}")
    micro = options.grad_accum * options.batch
    loader = torch.utils.data.DataLoader(dataset, batch_size=options.batch, collate_fn=collate,
                                         sampler=_Sampler(len(dataset), options.seed, start * micro),
                                         num_workers=options.workers)
    result = TrainResult(start_step=start)
    out_dir.mkdir(parents=True, exist_ok=True)
    batches = iter(loader)
    with open(out_dir / "train_log.jsonl", "a") as log_file:
        for step in range(start, options.steps):
            total = 0.0
            for k in range(options.grad_accum):
                generator = torch.Generator().manual_seed(options.seed * 1_000_003 + step * options.grad_accum + k)
                with accelerator.accumulate(controlnet):
                    loss = edm_loss(pipe, controlnet, next(batches), generator, camera=options.camera)
                    accelerator.backward(loss)
                    if accelerator.sync_gradients:
                        accelerator.clip_grad_norm_(controlnet.parameters(), 1.0)
                    optimizer.step()
                    lr_scheduler.step()
                    optimizer.zero_grad()
                total += loss.item() / options.grad_accum
            result.losses.append((step + 1, total))
            result.step_times.append(time.perf_counter())
            log_file.write(json.dumps({"step": step + 1, "loss": total, "lr": lr_scheduler.get_last_lr()[0]}) + "\n")
            log_file.flush()
            log(f"step {step + 1}/{options.steps} loss {total:.5f}")
            if (step + 1) % options.checkpointing_steps == 0 or step + 1 == options.steps:
                accelerator.save_state(str(out_dir / f"checkpoint-{step + 1}"))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        result.controlnet_dir = out_dir / "controlnet"
        accelerator.unwrap_model(controlnet).save_pretrained(result.controlnet_dir)
    accelerator.end_training()
    return result

