"""``trajplate posetraj-train`` on tiny SVD weights and 4 tiny synthetic clips (CPU): the loss falls, a checkpoint
resumes where it stopped, and the pipeline loads what training wrote and generates 14 frames."""

import json

import numpy as np
import pytest
import torch
from support.synthetic import COLORS, synthetic_parts
from trajplate.cli import main
from trajplate.params import GenerateParams
from trajplate.pipelines.posetraj import tiny
from trajplate.pipelines.posetraj.data import PoseTrajClips, write_clip
from trajplate.pipelines.registry import pipeline_class
from trajplate.presets import get_preset
from trajplate.shot import Shot

SIZE = 64


def _frames(arrays: dict) -> np.ndarray:
    """(F, H, W, 3) uint8: the ground shaded by depth, entities in their colours (as the synthetic first frame)."""
    depth, mask = arrays["depth"], arrays["instance_mask"]
    shade = np.where(np.isfinite(depth), 200 - np.minimum(depth, 40) * 3, 90).astype(np.uint8)
    frames = np.repeat(shade[..., None], 3, axis=-1)
    for entity in range(1, mask.max() + 1):
        frames[mask == entity] = COLORS[(entity - 1) % len(COLORS)]
    return frames


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("posetraj-clips")
    for i, (frames, entities) in enumerate([(14, 1), (16, 2), (18, 2), (20, 3)]):
        meta, arrays, first = synthetic_parts(num_frames=frames, width=SIZE, height=SIZE, num_entities=entities)
        write_clip(root / f"clip_{i:05d}", Shot.from_arrays(meta, arrays, first_frame=first), _frames(arrays))
    return root


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("posetraj-tiny")
    tiny.build(root)
    return root / "base"


def _log(out):
    return [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]


def test_dataset_reads_the_layout(data_dir):
    clips = PoseTrajClips(data_dir, (SIZE, SIZE))
    assert len(clips) == 4
    clip = clips[3]
    assert clip.pixel_values.shape == clip.maps.shape == (14, 3, SIZE, SIZE) and clip.camera.shape == (14, 12)
    assert clip.pixel_values.min() >= -1 and clip.pixel_values.max() <= 1
    assert (clip.maps[:13] > 0).any() and (clip.maps[13] == -1).all()  # segments drawn, last map black


def test_train_lowers_the_loss_checkpoints_resumes_and_loads(data_dir, base_dir, tmp_path):
    out = tmp_path / "run"
    args = ["posetraj-train", str(data_dir), "--base", str(base_dir), "--out", str(out), "--lr", "1e-3",
            "--grad-accum", "1", "--width", str(SIZE), "--height", str(SIZE)]
    assert main([*args, "--steps", "30"]) == 0
    losses = [row["loss"] for row in _log(out)]
    assert len(losses) == 30
    assert np.mean(losses[-8:]) < 0.8 * np.mean(losses[:8]), losses
    assert (out / "checkpoint-30" / "controlnet" / "config.json").is_file()
    assert (out / "checkpoint-30" / "optimizer.bin").is_file()

    assert main([*args, "--steps", "32", "--resume"]) == 0
    assert [row["step"] for row in _log(out)][30:] == [31, 32]

    pipe = pipeline_class("posetraj").load(get_preset("posetraj"), base_dir, out / "controlnet")
    params = GenerateParams(pipeline="posetraj", steps=2, guidance=1.0, options={"width": SIZE, "height": SIZE})
    meta, arrays, first = synthetic_parts(num_frames=14, width=SIZE, height=SIZE)
    inputs = pipe.prepare(Shot.from_arrays(meta, arrays, first_frame=first), params)
    video = pipe.generate(inputs, params, lambda *a: None)
    assert video.frames.shape == (14, SIZE, SIZE, 3)
    trained = pipe.pipe.controlnet.controlnet_mid_block.weight
    assert trained.abs().sum() > 0  # started at zero: training moved the output convs
    assert torch.equal(trained, pipeline_class("posetraj").load(
        get_preset("posetraj"), base_dir, out / "checkpoint-32").pipe.controlnet.controlnet_mid_block.weight)


def test_resume_without_checkpoint_is_refused(data_dir, base_dir, tmp_path, capsys):
    assert main(["posetraj-train", str(data_dir), "--base", str(base_dir), "--out", str(tmp_path / "none"),
                 "--resume"]) == 2
    assert "no checkpoint" in capsys.readouterr().err
