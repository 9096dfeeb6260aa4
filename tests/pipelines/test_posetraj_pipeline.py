"""PoseTraj end to end on tiny weights: build → real loading code → exported bundle → 14 frames."""

import numpy as np
import pytest
from trajplate.params import GenerateParams
from trajplate.pipelines.base import Cancelled, PipelineInputError
from trajplate.pipelines.registry import pipeline_class
from trajplate.presets import get_preset
from trajplate.shot import load_shot

SMALL = {"width": 64, "height": 64}  # latent 8×8: the same code as 576×320 at a fraction of the cost


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("posetraj-tiny")
    pipeline_class("posetraj").build_tiny(root)
    return root


@pytest.fixture(scope="module")
def pipe(tiny_root):
    return pipeline_class("posetraj").load(get_preset("posetraj"), tiny_root / "base", tiny_root / "adapter-camera")


def params(**kw):
    return GenerateParams(pipeline="posetraj", **{"steps": 2, "guidance": 1.0, "options": SMALL, **kw})


def test_generates_14_frames_from_the_shot_deterministically(pipe, shot_bundle):
    shot = load_shot(shot_bundle)
    inputs = pipe.prepare(shot, params())
    assert inputs.maps.shape == (14, 64, 64, 3) and inputs.camera.shape == (14, 12) and not inputs.maps[-1].any()
    seen = []
    video = pipe.generate(inputs, params(), lambda *a: seen.append(a))
    assert video.frames.shape == (14, 64, 64, 3) and video.frames.dtype == np.uint8
    assert ("denoising", 2, 2) in seen and seen[-1] == ("decoding", 1, 1)
    assert video.metadata["camera"] and video.metadata["motion_bucket_id"] == 128
    np.testing.assert_array_equal(video.shot_frames, inputs.shot_frames)
    again = pipe.generate(inputs, params(), lambda *a: None)
    np.testing.assert_array_equal(video.frames, again.frames)
    weaker = pipe.generate(inputs, params(strength=0.0), lambda *a: None)
    assert np.abs(weaker.frames.astype(int) - video.frames).max() > 0  # the ControlNet reaches the output
    preview = pipe.preview(shot, params())
    assert preview.shape == (14, shot.height, shot.width, 3)


def test_cancel_stops_before_decoding(pipe, shot_bundle):
    inputs = pipe.prepare(load_shot(shot_bundle), params())
    stages = []

    def progress(stage, step, steps):
        stages.append(stage)
        if stage == "denoising":
            raise Cancelled

    with pytest.raises(Cancelled):
        pipe.generate(inputs, params(), progress)
    assert "decoding" not in stages


def test_bad_input_names_the_field(pipe, tiny_root, shot_bundle):
    with pytest.raises(PipelineInputError, match="options.surface_pointz"):
        pipe.prepare(load_shot(shot_bundle), params(options={"surface_pointz": 2}))
    with pytest.raises(PipelineInputError, match="memory_mode"):
        pipeline_class("posetraj").load(get_preset("posetraj"), tiny_root / "base", tiny_root / "adapter",
                                        memory_mode="everything")
    with pytest.raises(FileNotFoundError, match="posetraj-train"):
        pipeline_class("posetraj").load(get_preset("posetraj"), tiny_root / "base", tiny_root)
