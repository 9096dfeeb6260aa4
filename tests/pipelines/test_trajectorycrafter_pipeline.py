"""TrajectoryCrafter end to end on tiny random weights, loaded through the real loading code from exported bundles."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from support.bundles import build_bundle
from trajplate.params import GenerateParams
from trajplate.pipelines.base import Cancelled, PipelineInputError
from trajplate.pipelines.trajectorycrafter import PIPELINE
from trajplate.pipelines.trajectorycrafter.adapter import QUALITY_SUFFIX
from trajplate.pipelines.trajectorycrafter.loading import save_tiny_weights
from trajplate.presets import get_preset
from trajplate.shot import load_shot
from trajplate.video import write_mp4

PRESET = get_preset("trajectorycrafter")


def _params(**kw):
    options = kw.pop("options", {"target_pose": [0, 10, 0.1, 0, 0]})
    return GenerateParams(pipeline="trajectorycrafter", steps=2, options=options, **kw)


@pytest.fixture(scope="module")
def small_rgb_bundle():
    """The standard scene at 160×96, 13 frames, with every frame rendered (the source TrajectoryCrafter re-shoots)."""
    return build_bundle("standard-160x96x13-rgb", "--scene", "standard", "--width", "160", "--height", "96",
                        "--frames", "13", "--rgb-frames")


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """Tiny weights at 64×96 px, 9 frames: the same code as native size, fast."""
    root = tmp_path_factory.mktemp("crafter-small")
    save_tiny_weights(root, sample_height=8, sample_width=12, sample_frames=9)
    return PIPELINE.load(PRESET, root / "base", root / "adapter")


def test_same_seed_same_video_and_progress(small, small_rgb_bundle):
    shot = load_shot(small_rgb_bundle)
    calls = []
    inputs = small.prepare(shot, _params(seed=7))
    assert inputs.prompt.endswith(QUALITY_SUFFIX)
    first = small.generate(inputs, _params(seed=7), lambda *a: calls.append(a))
    again = small.generate(small.prepare(shot, _params(seed=7)), _params(seed=7), lambda *a: None)
    other = small.generate(inputs, _params(seed=8), lambda *a: None)
    assert first.frames.shape == (9, 64, 96, 3) and first.frames.dtype == np.uint8 and first.fps == 10.0
    np.testing.assert_array_equal(first.frames, again.frames)
    assert np.abs(first.frames.astype(int) - other.frames).max() > 0
    assert [c for c in calls if c[0] == "denoising"] == [("denoising", 1, 2), ("denoising", 2, 2)]
    assert first.shot_frames[0] == shot.frame_numbers[0] and first.shot_frames[-1] == shot.frame_numbers[-1]


def test_cancel_stops_before_decoding(small, small_rgb_bundle):
    shot = load_shot(small_rgb_bundle)
    stages = []

    def progress(stage, step, steps):
        stages.append(stage)
        if stage == "denoising":
            raise Cancelled

    with pytest.raises(Cancelled):
        small.generate(small.prepare(shot, _params()), _params(), progress)
    assert "decoding" not in stages


def test_bad_options_and_modes_are_named(small, small_rgb_bundle):
    shot = load_shot(small_rgb_bundle)
    with pytest.raises(PipelineInputError, match="options.target_poses.*valid options"):
        small.prepare(shot, _params(options={"target_poses": [0, 1, 0, 0, 0]}))
    with pytest.raises(PipelineInputError, match="options.target_w2c: shape"):
        small.prepare(shot, _params(options={"target_w2c": [[1, 0], [0, 1]]}))
    with pytest.raises(PipelineInputError, match="source_video"):
        small.prepare(shot, _params(options={"target_pose": [0, 1, 0, 0, 0], "source_video": "/nonexistent.mp4"}))
    with pytest.raises(PipelineInputError, match="memory_mode"):
        PIPELINE.load(PRESET, Path("x"), Path("y"), memory_mode="bogus")


def test_exact_target_cameras_from_the_shot(small, small_rgb_bundle):
    """Target = the shot camera itself: the render reproduces the shot's frames (resampled), nearly hole-free."""
    shot = load_shot(small_rgb_bundle)
    inputs = small.prepare(shot, _params(options={"target_w2c": shot.camera_w2c_opencv.tolist()}))
    assert inputs.conditioning.holes.mean() < 0.02
    np.testing.assert_allclose(inputs.conditioning.target_w2c, shot.camera_w2c_opencv[inputs.conditioning.source_index])


@pytest.fixture(scope="module")
def native_take(tmp_path_factory, shot_bundle):
    """One native-size (49×384×672) tiny run re-shooting a take with estimated depth. The take starts at the
    rendered first frame, as every take does; here it pans 2 px per frame."""
    root = tmp_path_factory.mktemp("crafter-native")
    PIPELINE.build_tiny(root)
    pipe = PIPELINE.load(PRESET, root / "base", root / "adapter")
    shot = load_shot(shot_bundle)
    take = root / "take.mp4"
    write_mp4(take, np.stack([np.roll(shot.first_frame, 2 * i, axis=1) for i in range(49)]), shot.meta.fps)
    params = _params(seed=3, options={"target_pose": [0, -15, 0, 0, 0], "source_video": str(take)})
    inputs = pipe.prepare(shot, params)
    return shot, inputs, pipe.generate(inputs, params, lambda *a: None)


@pytest.mark.slow  # the one native-size run: ≈ 3 min of CPU, mostly the tiny VAE at 49×384×672
def test_native_run_from_a_take_gives_49_frames(native_take):
    shot, inputs, video = native_take
    assert video.frames.shape == (49, 384, 672, 3) and video.fps == 10.0
    assert video.metadata["source"] == "take" and video.metadata["depth_alignment"] is not None
    np.testing.assert_array_equal(video.shot_frames, shot.frame_numbers.astype(np.float64))
    assert 0.0 < inputs.conditioning.holes.mean() < 0.9
    assert inputs.conditioning.reference.shape == (10, 384, 672, 3)
