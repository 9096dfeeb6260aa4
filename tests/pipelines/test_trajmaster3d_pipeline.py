"""3DTrajMaster end to end through TrajPlate's interface: tiny weights via the real loading code, exported bundles."""

import numpy as np
import pytest
import torch
from peft.tuners.tuners_utils import BaseTunerLayer
from trajplate.params import GenerateParams
from trajplate.pipelines.base import Cancelled, PipelineInputError
from trajplate.pipelines.registry import pipeline_class
from trajplate.pipelines.trajmaster3d.loading import save_tiny_weights
from trajplate.pipelines.trajmaster3d.trajpipeline import apply_memory_mode
from trajplate.presets import get_preset
from trajplate.shot import Shot, load_shot

PRESET = get_preset("3dtrajmaster")
LONG_CAPTION = "a tall slender robot with polished silver armour glowing blue eyes and long jointed arms walking"


def _lora_active(pipe) -> bool:
    return any(not m.disable_adapters for m in pipe.transformer.modules() if isinstance(m, BaseTunerLayer))


def _params(**kwargs):
    return GenerateParams(pipeline="3dtrajmaster", **kwargs)


def _long_captions(shot: Shot) -> Shot:
    """The exported shot with 15-24 word entity captions (the standard scene's are short)."""
    entities = [e.model_copy(update={"prompt": f"{LONG_CAPTION} {e.prompt}"}) for e in shot.meta.entities]
    return Shot.from_arrays(shot.meta.model_copy(update={"entities": entities}), shot.arrays(), shot.first_frame)


@pytest.fixture(scope="module")
def native(tmp_path_factory):
    """Tiny weights at the native 480x720x49, written by the pipeline's own build_tiny and loaded by its load."""
    cls = pipeline_class("3dtrajmaster")
    root = tmp_path_factory.mktemp("tm3d-native")
    cls.build_tiny(root)
    return cls.load(PRESET, root / "base", root / "adapter", device="cpu")


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """Tiny weights at 64x96 px, 9 frames (3 latent frames), through the same loader."""
    root = tmp_path_factory.mktemp("tm3d-small")
    save_tiny_weights(root, sample_height=8, sample_width=12, sample_frames=9)
    return pipeline_class("3dtrajmaster").load(PRESET, root / "base", root / "adapter", device="cpu")


@pytest.mark.slow  # the one native-size run: the tiny VAE decodes 49×480×720 (~45 s on 2 idle cores)
def test_two_step_native_run_from_an_exported_bundle(native, shot_bundle):
    shot = _long_captions(load_shot(shot_bundle))
    params = _params(steps=2, seed=5, options={"entities": [1, 3], "annealed_sample_step": 0})
    inputs = native.prepare(shot, params)
    assert inputs.pose_embeds.shape == (2, 13, 12)
    assert inputs.prompt == (f"{shot.meta.entities[0].prompt} and {shot.meta.entities[2].prompt} are moving in the "
                             "bright studio with a chequered floor")

    injector_calls = []
    hook = native.pipe.transformer.transformer_blocks[0].attn_injector.register_forward_hook(
        lambda module, args, output: injector_calls.append(1))
    per_step = {}

    def progress(stage, step, steps):
        if stage == "denoising" and step > 0:
            per_step[step] = (_lora_active(native.pipe), len(injector_calls))
            injector_calls.clear()

    try:
        video = native.generate(inputs, params, progress)
    finally:
        hook.remove()
    assert per_step == {1: (True, 1), 2: (False, 0)}  # step 2 comes after the annealing step 0: plain CogVideoX
    assert video.frames.shape == (49, 480, 720, 3) and video.frames.dtype == np.uint8
    assert video.fps == 8.0
    np.testing.assert_allclose(video.shot_frames, np.linspace(1, 49, 49))
    assert video.metadata["entity_ids"] == [1, 3] and video.metadata["latent_frame_indices"][-1] == 46
    assert _lora_active(native.pipe)  # the next job starts with the adapter on


def test_same_seed_same_video_and_the_seed_matters(small, small_shot_bundle):
    shot = _long_captions(load_shot(small_shot_bundle))
    runs = {}
    for name, seed in (("a", 7), ("b", 7), ("c", 8)):
        params = _params(steps=2, seed=seed, options={"entities": [2]})
        runs[name] = small.generate(small.prepare(shot, params), params, lambda *a: None).frames
    assert runs["a"].shape == (9, 64, 96, 3)
    assert np.array_equal(runs["a"], runs["b"])
    assert not np.array_equal(runs["a"], runs["c"])


def test_cancel_stops_before_decoding_and_restores_the_adapter(small, small_shot_bundle):
    shot = _long_captions(load_shot(small_shot_bundle))
    params = _params(steps=4, options={"annealed_sample_step": 0})
    stages = []

    def progress(stage, step, steps):
        stages.append((stage, step))
        if stage == "denoising" and step == 2:  # inside a plain step: the adapter is off here
            raise Cancelled

    with pytest.raises(Cancelled):
        small.generate(small.prepare(shot, params), params, progress)
    assert stages == [("denoising", 0), ("denoising", 1), ("denoising", 2)]
    assert _lora_active(small.pipe)


def test_bad_requests_name_the_field(small, small_shot_bundle):
    shot = _long_captions(load_shot(small_shot_bundle))
    with pytest.raises(PipelineInputError, match="strength"):
        small.prepare(shot, _params(strength=0.5))
    with pytest.raises(PipelineInputError, match=r"options\.lora_scal"):
        small.prepare(shot, _params(options={"lora_scal": 0.5}))
    wordy = shot.meta.entities[0].model_copy(update={"prompt": " ".join([LONG_CAPTION] * 4)})
    wordy_shot = Shot.from_arrays(shot.meta.model_copy(update={"entities": [wordy, *shot.meta.entities[1:]]}),
                                  shot.arrays())
    with pytest.raises(PipelineInputError, match=r"entities\[1\]\.prompt.*T5 tokens"):
        small.prepare(wordy_shot, _params())
    assert small.prepare(shot, _params(prompt="my own prompt")).prompt == "my own prompt"


def test_memory_modes_on_the_cpu(small):
    apply_memory_mode(small.pipe, "model_offload", torch.device("cpu"))  # nothing to offload to: stays resident
    assert small.pipe.transformer.device.type == "cpu"
    with pytest.raises(PipelineInputError, match="memory_mode"):
        apply_memory_mode(small.pipe, "everything_offload", torch.device("cpu"))
    assert small.resident_bytes() > sum(p.numel() * 4 for p in small.pipe.transformer.parameters())


def test_preview_draws_the_poses(small, small_shot_bundle):
    shot = load_shot(small_shot_bundle)
    frames = small.preview(shot, _params())
    assert frames.shape == (3, shot.height, shot.width, 3)
