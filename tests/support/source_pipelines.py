"""Test-only pipelines that take a ``source_video`` (a take uploaded with the job), plugged in via TRAJPLATE_PLUGINS.

- ``test-crafter``: the real TrajectoryCrafter adapter (prepare, depth alignment, generate) whose tiny weights are
  built at 64×96 px and 9 frames instead of the native 384×672×49, so a job over HTTP takes seconds on a CPU.
- ``test-loop-source``: the test-loop DDIM sampler converging to the take's first frame (to the shot's first frame
  without a take), so a test can see from the output which file reached the worker.

Enable with :data:`PLUGINS` (``tests/`` on ``sys.path``, as :func:`support.pipelines.service_env` sets).
"""

from __future__ import annotations

from pathlib import Path

import av
import cv2
import torch
from trajplate.pipelines.trajectorycrafter.adapter import TrajectoryCrafter
from trajplate.pipelines.trajectorycrafter.loading import save_tiny_weights
from trajplate.presets import get_preset

from support.pipelines import PLUGIN, PRESET, LoopPipeline

PLUGINS = ",".join((PLUGIN, "test-crafter=support.source_pipelines:SmallCrafter",
                    "test-loop-source=support.source_pipelines:SourceLoop"))


class SmallCrafter(TrajectoryCrafter):
    id = "test-crafter"
    preset = get_preset("trajectorycrafter").model_copy(update={"id": "test-crafter"})

    @classmethod
    def build_tiny(cls, root: Path) -> None:
        save_tiny_weights(Path(root), sample_height=8, sample_width=12, sample_frames=9)


class SourceLoop(LoopPipeline):
    id = "test-loop-source"
    preset = PRESET.model_copy(update={"id": "test-loop-source"})
    input_files = ("source_video",)

    def prepare(self, shot, params, source_video: Path | None = None):
        if source_video is None:
            return super().prepare(shot, params)
        with av.open(str(source_video)) as container:
            first = next(container.decode(video=0)).to_ndarray(format="rgb24")
        _, shot_frames = super().prepare(shot, params)
        target = cv2.resize(first, (self.width, self.height), interpolation=cv2.INTER_AREA)
        return torch.from_numpy(target).permute(2, 0, 1).float() / 127.5 - 1.0, shot_frames
