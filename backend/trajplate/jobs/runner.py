"""Run one job in the current process: weights → pipeline (kept resident) → conditioning → sampling → MP4.

The same code runs in the embedded worker process, in a Ray actor and in ``trajplate run`` (no server), so a take
made anywhere carries the same files and provenance. A job folder holds ``bundle.zip`` (and any attached input file,
named by its form field, e.g. ``source_video``) on entry and gets ``video.mp4`` and ``metadata.json`` (each written
to a temp name and renamed) plus lines in ``job.log``.
"""

from __future__ import annotations

import errno
import gc
import json
import os
import socket
import time
import traceback
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import __version__
from ..params import GenerateParams
from ..pipelines.base import Cancelled, PipelineInputError, ProgressFn, TrajPipeline
from ..pipelines.common import effective_settings
from ..presets import Preset

BUNDLE, PARAMS, LOG, VIDEO, METADATA = "bundle.zip", "params.json", "job.log", "video.mp4", "metadata.json"
DISK_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


@dataclass
class JobSpec:
    """What an executor needs to run a job (picklable; crosses process and Ray boundaries). ``input_files``: name →
    sha256 of the files beside the bundle in the job folder, handed to the pipeline's ``prepare`` by name."""

    job_id: str
    params: dict[str, Any]
    preset: dict[str, Any]
    bundle_sha256: str
    allow_tiny: bool = True
    input_files: dict[str, str] = field(default_factory=dict)


@dataclass
class Outcome:
    """How a job ended: state succeeded | failed | cancelled, the error shown to the user, the metadata written."""

    state: str
    error: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


def append_log(job_dir: Path, message: str) -> None:
    with open(job_dir / LOG, "a", encoding="utf-8") as log:
        log.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {message}\n")


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON to a temp name beside ``path`` and rename it into place (never a half-written file)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
    try:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True), encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


class PipelineCache:
    """Loaded pipelines kept resident up to ``budget_bytes`` of ``resident_bytes()``, evicting least recently used.

    Sizes learned at load time are remembered, so a reload first evicts enough to fit. The pipeline in use is never
    evicted (a single pipeline larger than the budget still runs).
    """

    def __init__(self, budget_bytes: int):
        self.budget_bytes = budget_bytes
        self._pipes: OrderedDict[tuple, TrajPipeline] = OrderedDict()
        self._sizes: dict[tuple, int] = {}

    def keys(self) -> list[tuple]:
        return list(self._pipes)

    def _used(self) -> int:
        return sum(self._sizes.get(k, 0) for k in self._pipes)

    def _evict_until(self, need: int, keep: tuple | None) -> None:
        for key in [k for k in self._pipes if k != keep]:
            if self._used() + need <= self.budget_bytes:
                break
            del self._pipes[key]
        gc.collect()
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except ImportError:  # torch-free plugin pipelines
            pass

    def get(self, key: tuple, load: Callable[[], TrajPipeline]) -> TrajPipeline:
        if key in self._pipes:
            self._pipes.move_to_end(key)
            return self._pipes[key]
        self._evict_until(self._sizes.get(key, 0), keep=None)
        pipe = load()
        self._pipes[key] = pipe
        self._sizes[key] = pipe.resident_bytes()
        self._evict_until(0, keep=key)
        return pipe


def _score(frames, shot, shot_frames) -> Any:
    try:
        from ..score import score_take
    except ImportError as exc:
        return {"error": f"trajplate.score is not available: {exc}"}
    return score_take(frames, shot, shot_frames)


def run_job(
    spec: JobSpec,
    job_dir: Path,
    cache: PipelineCache,
    progress: ProgressFn,
    *,
    device: str = "cpu",
) -> dict[str, Any]:
    """Run ``spec`` on ``device`` with the bundle at ``job_dir/bundle.zip`` and its input files beside it; write
    ``video.mp4`` and ``metadata.json`` there and return the metadata.

    ``progress(stage, step, steps)`` is called at every stage change and every denoising step; a
    :class:`~trajplate.pipelines.base.Cancelled` raised from it propagates (decoding is skipped). Other errors
    propagate too (:func:`execute` turns them into an :class:`Outcome`).
    """
    from ..pipelines.registry import pipeline_class
    from ..shot import load_shot
    from ..video import write_mp4
    from ..weights import resolve_weights

    t0 = time.perf_counter()
    stage_times: dict[str, float] = {}

    def tracked(stage: str, step: int, steps: int) -> None:
        stage_times.setdefault(stage, time.perf_counter())
        progress(stage, step, steps)

    preset = Preset.model_validate(spec.preset)
    params = GenerateParams.model_validate(spec.params)
    tracked("loading", 0, 0)
    weights = resolve_weights(preset, allow_tiny=spec.allow_tiny)
    append_log(job_dir, f"weights: {'TINY random weights' if weights.tiny else weights.revisions}")
    key = (preset.id, params.variant, params.memory_mode, str(weights.base_dir), str(weights.adapter_dir), device)
    pipe = cache.get(key, lambda: pipeline_class(preset.id).load(
        preset, weights.base_dir, weights.adapter_dir, device=device, memory_mode=params.memory_mode,
        variant=params.variant,
    ))
    tracked("conditioning", 0, 0)
    shot = load_shot(job_dir / BUNDLE)
    inputs = pipe.prepare(shot, params, **{name: job_dir / name for name in spec.input_files})
    video = pipe.generate(inputs, params, tracked)
    tracked("encoding", 0, 1)
    settings = effective_settings(params, preset, shot.meta.scene_prompt)
    stamp = {"job_id": spec.job_id, "pipeline": preset.id, "seed": params.seed, "bundle_sha256": spec.bundle_sha256,
             "tiny": weights.tiny}
    write_mp4(job_dir / VIDEO, video.frames, video.fps, metadata=stamp)
    order = [s for s in ("loading", "conditioning", "denoising", "decoding", "encoding") if s in stage_times]
    ends = [stage_times[s] for s in order[1:]] + [time.perf_counter()]
    timings = {f"{s}_s": round(end - stage_times[s], 4) for s, end in zip(order, ends, strict=True)}
    metadata = {
        **stamp,
        "input_files": dict(spec.input_files),
        "trajplate_version": __version__,
        "weights": weights.revisions,
        "steps": video.metadata.get("steps", settings["steps"]),
        "guidance": video.metadata.get("guidance", settings["guidance"]),
        "prompt": video.metadata.get("prompt", settings["prompt"]),
        "negative_prompt": video.metadata.get("negative_prompt", settings["negative_prompt"]),
        "entity_prompts": {e.id: e.prompt for e in shot.meta.entities},
        "params": params.model_dump(mode="json"),
        "fps": video.fps,
        "frame_count": int(video.frames.shape[0]),
        "width": int(video.frames.shape[2]),
        "height": int(video.frames.shape[1]),
        "shot_frames": [float(f) for f in video.shot_frames],
        "pipeline_metadata": video.metadata,
        "device": device,
        "host": socket.gethostname(),
        "timings": {**timings, "total_s": round(time.perf_counter() - t0, 4)},
        "score": _score(video.frames, shot, video.shot_frames) if params.score else None,
    }
    write_json_atomic(job_dir / METADATA, metadata)
    return metadata


def execute(
    spec: JobSpec, job_dir: Path, cache: PipelineCache, progress: ProgressFn, *, device: str = "cpu"
) -> Outcome:
    """:func:`run_job` with every ending turned into an :class:`Outcome` and logged in ``job.log``.

    The user-facing error names the cause: cancelled, bad input (the field), missing weights (the fix),
    ``disk full`` (earlier results are untouched, the new one was never renamed into place), or the exception.
    """
    from ..shot import BundleError
    from ..weights import WeightsError

    try:
        append_log(job_dir, f"start on {device} ({socket.gethostname()}, pid {os.getpid()})")
        metadata = run_job(spec, job_dir, cache, progress, device=device)
    except Cancelled:
        append_log(job_dir, "cancelled")
        return Outcome("cancelled")
    except (PipelineInputError, BundleError, WeightsError) as exc:
        outcome = Outcome("failed", f"{type(exc).__name__}: {exc}")
    except OSError as exc:
        reason = "disk full" if exc.errno in DISK_FULL_ERRNOS else type(exc).__name__
        outcome = Outcome("failed", f"{reason} while writing the result: {exc}")
    except Exception as exc:  # noqa: BLE001 - a job's failure must never take the worker down
        outcome = Outcome("failed", f"{type(exc).__name__}: {exc}")
    else:
        append_log(job_dir, "succeeded")
        return Outcome("succeeded", metadata=metadata)
    try:
        append_log(job_dir, f"failed: {outcome.error}\n{traceback.format_exc()}")
    except OSError:  # the disk may be full; the error still reaches the store
        pass
    return outcome
