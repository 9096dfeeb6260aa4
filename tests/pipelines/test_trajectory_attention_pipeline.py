"""Trajectory Attention end to end on tiny weights: build → real loading code → exported bundle → video."""

import numpy as np
import pytest
import torch
from trajplate.conditioning import trajectory_attention as cond
from trajplate.params import GenerateParams
from trajplate.pipelines.base import Cancelled, PipelineInputError
from trajplate.pipelines.registry import pipeline_class
from trajplate.pipelines.trajectory_attention.convert import ADAPTER_FILE, AdapterFormatError
from trajplate.presets import get_preset
from trajplate.shot import Shot, load_shot

SMALL = {"width": 128, "height": 64}  # tiny weights at a small size (25 frames, latent 8×16)


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("trajattn-tiny")
    pipeline_class("trajectory-attention").build_tiny(root)
    return root


@pytest.fixture(scope="module")
def pipe(tiny_root):
    return pipeline_class("trajectory-attention").load(get_preset("trajectory-attention"), tiny_root / "base",
                                                       tiny_root / "adapter", memory_mode="model_offload")


@pytest.fixture(scope="module")
def shot(shot_bundle):
    return load_shot(shot_bundle)


def params(**kw):
    return GenerateParams(pipeline="trajectory-attention", **{"steps": 2, "options": SMALL, **kw})


def test_tiny_layout_is_the_authors_and_loading_checks_keys(tiny_root, pipe, tmp_path):
    assert (tiny_root / "base" / "model_index.json").is_file() and (tiny_root / "adapter" / ADAPTER_FILE).is_file()
    assert pipe.applied_memory_mode == "resident"  # no CUDA here: validated, recorded, not applied
    assert len(pipe.pipe.unet.branch_names()) == 6
    short = torch.load(tiny_root / "adapter" / ADAPTER_FILE, weights_only=True)[:-1]
    torch.save(short, tmp_path / ADAPTER_FILE)
    with pytest.raises(AdapterFormatError, match="holds 29 tensors"):
        pipeline_class("trajectory-attention").load(get_preset("trajectory-attention"), tiny_root / "base", tmp_path)
    with pytest.raises(PipelineInputError, match="memory_mode"):
        pipeline_class("trajectory-attention").load(get_preset("trajectory-attention"), tiny_root / "base",
                                                    tiny_root / "adapter", memory_mode="fast")


def test_two_step_run_from_exported_bundle_is_deterministic(pipe, shot):
    events = []
    first = pipe.generate(pipe.prepare(shot, params(seed=5)), params(seed=5), lambda *e: events.append(e))
    again = pipe.generate(pipe.prepare(shot, params(seed=5)), params(seed=5), lambda *e: None)
    assert first.frames.shape == (25, 64, 128, 3) and first.frames.dtype == np.uint8
    assert np.array_equal(first.frames, again.frames)
    assert first.frames.std() > 1.0  # not a blank video
    assert first.fps == 7.0
    np.testing.assert_array_equal(first.shot_frames, shot.frame_numbers[::2])  # 49 frames → every other one
    assert events == [("conditioning", 0, 1), ("denoising", 1, 2), ("denoising", 2, 2), ("decoding", 0, 1),
                      ("decoding", 1, 1)]
    assert first.metadata["tracks"]["count"] == 4 * 16 * 8


def test_cancel_stops_before_decoding(pipe, shot):
    events = []

    def progress(stage, step, steps):
        events.append(stage)
        if stage == "denoising":
            raise Cancelled()

    with pytest.raises(Cancelled):
        pipe.generate(pipe.prepare(shot, params(steps=3)), params(steps=3), progress)
    assert events == ["conditioning", "denoising"]
    assert pipe.pipe.unet.trajectory_state.control is None  # the branch is not left armed


def test_authors_track_files_drive_the_pipeline(pipe, shot, tmp_path):
    tracks, _ = cond.shot_tracks(shot, (128, 64))
    cond.save_authors_tracks(tracks, tmp_path)
    inputs = pipe.prepare(shot, params(options={**SMALL, "tracks_dir": str(tmp_path)}))
    assert inputs.tracks.size == (1024, 576)
    np.testing.assert_allclose(inputs.tracks.coords, tracks.coords * [8.0, 9.0], rtol=1e-6)  # 128×64 → 1024×576
    assert inputs.shot_frames.shape == (25,)


def test_bad_inputs_name_the_field(pipe, shot):
    with pytest.raises(PipelineInputError, match="options.width"):
        pipe.prepare(shot, params(options={"width": 100}))
    with pytest.raises(PipelineInputError, match="options.colour"):
        pipe.prepare(shot, params(options={"colour": 1}))
    with pytest.raises(PipelineInputError, match="grid_step"):
        pipe.prepare(shot, params(options={**SMALL, "grid_step": 32, "grid_draws": 1}))
    meta = shot.meta.model_dump()
    meta["renders"]["depth"] = False
    no_depth = Shot.from_arrays(meta, {k: v for k, v in shot.arrays().items() if k != "depth"},
                                first_frame=shot.first_frame)
    with pytest.raises(PipelineInputError, match="depth"):
        pipe.prepare(no_depth, params())


def test_preview_draws_tracks_over_the_first_frame(pipe, shot):
    preview = pipe.preview(shot, params())
    assert preview.shape == (25, shot.height, shot.width, 3) and preview.dtype == np.uint8
    assert not np.array_equal(preview[0], shot.first_frame // 2)  # something was drawn
    assert not np.array_equal(preview[0], preview[-1])  # and it moves
