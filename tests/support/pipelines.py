"""A test-only pipeline for the job service's throughput, cancel and crash tests (plugged in via TRAJPLATE_PLUGINS).

It is a real, tiny sampler: a diffusers ``DDIMScheduler`` loop over a small latent video whose "denoiser" predicts
the noise that separates the latents from the shot's first frame, so the output converges to that frame. Weights are
a scheduler config plus a 3x3 colour matrix in safetensors, written by ``build_tiny`` and read by ``load`` through the
same tiny-weights path as the real pipelines. Each step costs about a millisecond (plus ``step_ms`` of sleep, which
lets tests hold a job in ``denoising`` long enough to cancel or kill it).

Enable with ``TRAJPLATE_PLUGINS=test-loop=support.pipelines:LoopPipeline`` (``tests/`` on ``sys.path``).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import cv2
import httpx
import numpy as np
import torch
from diffusers import DDIMScheduler
from pydantic import BaseModel, ConfigDict, Field
from safetensors.torch import load_file, save_file
from trajplate.pipelines.base import GeneratedVideo, PipelineInputError, TrajPipeline
from trajplate.presets import Preset

PLUGIN = "test-loop=support.pipelines:LoopPipeline"

PRESET = Preset.model_validate({
    "id": "test-loop", "name": "Test loop", "description": "test-only DDIM loop toward the first frame",
    "base": {"repo_id": "trajplate-test/none-base"}, "adapter": {"repo_id": "trajplate-test/none-adapter"},
    "native": {"width": 32, "height": 24, "frames": 6, "fps": 8.0},
    "defaults": {"steps": 8, "guidance": 1.0, "scheduler": "DDIMScheduler"},
    "licence": {"base": "test", "adapter": "test"},
    "tiers": {"draft": {"steps": 4}},
})


class LoopOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    step_ms: float = Field(0.0, ge=0, le=10_000, description="extra sleep per step (tests hold a job in denoising)")
    die_at_step: int | None = Field(None, ge=1, description="the process exits at this step (a crashed worker)")


class LoopPipeline(TrajPipeline):
    id = "test-loop"
    Options = LoopOptions
    preset = PRESET

    def __init__(self, scheduler: DDIMScheduler, colour: torch.Tensor, size: tuple[int, int, int]):
        self.scheduler, self.colour, (self.frames, self.height, self.width) = scheduler, colour, size

    def resident_bytes(self) -> int:
        return self.colour.numel() * self.colour.element_size()

    @classmethod
    def build_tiny(cls, root: Path) -> None:
        DDIMScheduler(num_train_timesteps=1000).save_pretrained(root / "base" / "scheduler")
        native = PRESET.native
        (root / "base" / "config.json").write_text(
            json.dumps({"frames": native.frames, "height": native.height, "width": native.width}))
        (root / "adapter").mkdir()
        save_file({"colour": torch.eye(3)}, root / "adapter" / "colour.safetensors")

    @classmethod
    def load(cls, preset, base_dir, adapter_dir, *, device="cpu", dtype=None, memory_mode="resident", variant=None):
        config = json.loads((Path(base_dir) / "config.json").read_text())
        scheduler = DDIMScheduler.from_pretrained(Path(base_dir) / "scheduler")
        colour = load_file(Path(adapter_dir) / "colour.safetensors")["colour"]
        return cls(scheduler, colour, (config["frames"], config["height"], config["width"]))

    def prepare(self, shot, params):
        if shot.first_frame is None:
            raise PipelineInputError("first_frame: this pipeline needs the first-frame render; export it")
        target = cv2.resize(shot.first_frame, (self.width, self.height), interpolation=cv2.INTER_AREA)
        shot_frames = np.linspace(shot.frame_numbers[0], shot.frame_numbers[-1], self.frames)
        return torch.from_numpy(target).permute(2, 0, 1).float() / 127.5 - 1.0, shot_frames

    def generate(self, inputs, params, progress):
        target, shot_frames = inputs
        options = LoopOptions.model_validate(params.options)
        steps = params.steps or PRESET.defaults.steps
        generator = torch.Generator().manual_seed(params.seed)
        latents = torch.randn((self.frames, *target.shape), generator=generator)
        self.scheduler.set_timesteps(steps)
        for i, t in enumerate(self.scheduler.timesteps):
            alpha = self.scheduler.alphas_cumprod[t]
            noise_pred = (latents - alpha.sqrt() * target) / (1 - alpha).sqrt()
            latents = self.scheduler.step(noise_pred, t, latents).prev_sample
            if options.step_ms:
                time.sleep(options.step_ms / 1000)
            if options.die_at_step == i + 1:
                os._exit(3)
            progress("denoising", i + 1, steps)
        progress("decoding", 0, 1)
        rgb = torch.einsum("ij,fjhw->fhwi", self.colour, latents.clamp(-1, 1))
        frames = ((rgb + 1) * 127.5).round().to(torch.uint8).numpy()
        return GeneratedVideo(frames=frames, fps=PRESET.native.fps, shot_frames=shot_frames,
                              metadata={"steps": steps})


# -- a real server for service tests -------------------------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[2]
TEST_HOME = ROOT / ".cache" / "trajplate-test-home"  # tiny weights are built once and kept between test runs


def service_env(**extra: str) -> dict[str, str]:
    """Environment for a server, CLI or Ray worker that knows the test pipeline and the test home."""
    env = {k: v for k, v in os.environ.items() if k not in ("TRAJPLATE_TOKEN", "RAY_ADDRESS")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT / "tests"), env.get("PYTHONPATH", "")) if p)
    env["TRAJPLATE_PLUGINS"] = PLUGIN
    env["TRAJPLATE_HOME"] = str(TEST_HOME)
    env.update(extra)
    return env


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class ServerProcess:
    """``trajplate serve`` on a free loopback port in its own process group; ``stop()`` reaps it and its workers."""

    def __init__(self, data_dir: Path, *args: str, token: str | None = None, env: dict[str, str] | None = None):
        self.data_dir, self.args, self.token = Path(data_dir), args, token
        self.env = env or service_env()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def start(self, timeout: float = 90) -> ServerProcess:
        cmd = [sys.executable, "-m", "trajplate.cli", "serve", "--port", str(self.port), "--data-dir",
               str(self.data_dir), "--devices", "cpu", "--log-level", "warning", *self.args]
        if self.token:
            cmd += ["--token", self.token]
        log = open(self.data_dir.parent / f"server-{self.port}.log", "ab")  # noqa: SIM115 - kept for the process
        self.proc = subprocess.Popen(cmd, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}: {self.log()[-3000:]}")
            try:
                health = httpx.get(f"{self.url}/v1/health", headers=self.headers, timeout=2).json()
                if health["workers"] and all(w["ready"] for w in health["workers"]):
                    return self
            except (httpx.HTTPError, KeyError, ValueError):
                pass
            time.sleep(0.1)
        raise TimeoutError(f"server not ready in {timeout} s: {self.log()[-3000:]}")

    def log(self) -> str:
        return (self.data_dir.parent / f"server-{self.port}.log").read_text(errors="replace")

    def kill9(self) -> None:
        """SIGKILL the server process only (its workers must notice on their own)."""
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        try:  # anything left in the group we created (workers of a killed server)
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def submit(client: httpx.Client, bundle: bytes, params: dict, **fields: str) -> httpx.Response:
    """POST /v1/jobs with ``bundle`` bytes, ``params`` as JSON and any extra form ``fields``."""
    return client.post("/v1/jobs", files={"bundle": ("shot.zip", bundle, "application/zip")},
                       data={"params": json.dumps(params), **fields})


def follow(client: httpx.Client, job_id: str, timeout: float = 120) -> list[dict]:
    """Every event of GET /v1/jobs/{id}/events until the stream ends (the job is terminal)."""
    events = []
    with client.stream("GET", f"/v1/jobs/{job_id}/events", timeout=timeout) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if line.startswith("data:"):
                events.append(json.loads(line[5:]))
    return events


def wait_for(client: httpx.Client, job_id: str, predicate, timeout: float = 120) -> dict:
    """Poll GET /v1/jobs/{id} until ``predicate(job)``; returns that job view."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/v1/jobs/{job_id}").json()
        if predicate(job):
            return job
        time.sleep(0.02)
    raise TimeoutError(f"job {job_id} never matched; last: {job}")
