"""MagicMotion: tiny models through the real loading code, the authors' checkpoint layout, and exact conditioning.

Small tiny models (9 frames at 32×48) exercise loading, determinism, cancel and options; one native-size run
(49×480×720) goes end to end from the real exported bundle.
"""

from __future__ import annotations

import argparse
import shutil

import numpy as np
import PIL.Image
import pytest
import torch
from diffusers import CogVideoXDDIMScheduler, CogVideoXImageToVideoPipeline, CogVideoXTransformer3DModel
from diffusers.hooks import apply_group_offloading
from trajplate.conditioning import magicmotion as cond
from trajplate.params import GenerateParams
from trajplate.pipelines.base import Cancelled, PipelineInputError
from trajplate.pipelines.magicmotion import PIPELINE
from trajplate.pipelines.magicmotion.checkpoint import CheckpointError, read_state_dict
from trajplate.pipelines.magicmotion.checkpoint import main as convert_main
from trajplate.pipelines.magicmotion.models import (
    MagicMotionTransformer3DModel,
    SemanticFPNHead,
    TrajectoryControlNet,
)
from trajplate.pipelines.magicmotion.pipeline import MagicMotionPipeline
from trajplate.pipelines.magicmotion.tiny import HEADS, STAGES
from trajplate.presets import get_preset
from trajplate.shot import Shot, load_shot

SMALL = dict(frames=9, height=32, width=48)


def params(**kw) -> GenerateParams:
    return GenerateParams(pipeline="magicmotion", **{"steps": 2, "seed": 7, **kw})


@pytest.fixture(scope="module")
def preset():
    return get_preset("magicmotion")


@pytest.fixture(scope="module")
def tiny_small(tmp_path_factory):
    root = tmp_path_factory.mktemp("magicmotion-small")
    PIPELINE.build_tiny(root, **SMALL)
    return root


@pytest.fixture(scope="module")
def pipe_small(preset, tiny_small):
    return PIPELINE.load(preset, tiny_small / "base", tiny_small / "adapter")


@pytest.fixture(scope="module")
def small_shot(small_shot_bundle):
    return load_shot(small_shot_bundle)


@pytest.fixture(scope="module")
def native_shot(shot_bundle):
    return load_shot(shot_bundle)


def shot_variant(shot: Shot, meta_update: dict | None = None, **arrays) -> Shot:
    """A copy of a real exported shot with some metadata and arrays replaced (validated again)."""
    meta = shot.meta.model_dump()
    meta.update(meta_update or {})
    merged = {**shot.arrays(), **arrays}
    return Shot.from_arrays(meta, {k: v for k, v in merged.items() if v is not None}, first_frame=shot.first_frame)


# --- weights: the authors' .pt layout, strict keys, safe pickles ---------------------------------------------------


def test_preset_variants_are_the_authors_files(preset, tiny_small):
    assert {v: preset.variants[v].files for v in preset.variants} == {k: [f] for k, f in STAGES.items()}
    assert preset.licence.adapter.startswith("MIT") and "CogVideoX" in preset.licence.base
    for rel in [*STAGES.values(), *HEADS.values()]:
        assert (tiny_small / "adapter" / rel).is_file()


def test_tiny_checkpoints_load_with_no_missing_or_unexpected_key(pipe_small, tiny_small):
    config = pipe_small.pipe.transformer.config
    state = read_state_dict(tiny_small / "adapter" / STAGES["box"])
    assert "patch_embed.pos_embedding" in state  # the learned positional embedding is loaded, not recomputed
    loaded = pipe_small.pipe.controlnet.state_dict()
    assert loaded.keys() == state.keys()
    assert all(torch.equal(loaded[k], state[k].to(loaded[k].dtype)) for k in state)  # cast to the model dtype
    head = SemanticFPNHead.from_transformer_config(config)
    missing, unexpected = head.load_state_dict(read_state_dict(tiny_small / "adapter" / HEADS["box"]), strict=True)
    assert not missing and not unexpected


def test_a_renamed_key_fails_loading_and_names_it(preset, tiny_small, tmp_path):
    adapter = tmp_path / "adapter"
    shutil.copytree(tiny_small / "adapter", adapter)
    path = adapter / STAGES["box"]
    state = torch.load(path, weights_only=True)["state_dict"]
    state["transformer_blocks.1.attn1.q_proj.weight"] = state.pop("transformer_blocks.1.attn1.to_q.weight")
    torch.save({"state_dict": state}, path)
    with pytest.raises(CheckpointError) as err:
        PIPELINE.load(preset, tiny_small / "base", adapter, variant="box")
    assert "transformer_blocks.1.attn1.to_q.weight" in str(err.value)  # missing
    assert "transformer_blocks.1.attn1.q_proj.weight" in str(err.value)  # unexpected
    assert str(path) in str(err.value)


def test_pickles_with_objects_are_refused_until_converted_once(tiny_small, tmp_path):
    state = read_state_dict(tiny_small / "adapter" / STAGES["mask"])
    path = tmp_path / "stage1" / "mask.pt"
    path.parent.mkdir()
    torch.save({"state_dict": state, "args": argparse.Namespace(lr=1e-5)}, path)  # training args ride along
    with pytest.raises(CheckpointError, match="trust-pickle"):
        read_state_dict(path)
    convert_main([str(tmp_path), "--trust-pickle"])  # python -m trajplate.pipelines.magicmotion.checkpoint ...
    assert (tmp_path / "stage1" / "mask.safetensors").is_file()
    converted = read_state_dict(path)  # now served from the safetensors file, no pickle involved
    assert converted.keys() == state.keys() and all(torch.equal(converted[k], state[k]) for k in state)


# --- models -----------------------------------------------------------------------------------------------------


def _tiny_branch_inputs(transformer):
    c = transformer.config
    g = torch.Generator().manual_seed(0)
    frames = (c.sample_frames - 1) // 4 + 1
    latents = torch.randn(2, frames, c.in_channels // 2, c.sample_height, c.sample_width, generator=g)
    image = torch.randn(latents.shape, generator=g)
    traj = torch.randn(latents.shape, generator=g)
    text = torch.randn(2, c.max_text_seq_length, c.text_embed_dim, generator=g)
    t = torch.tensor([500, 500])
    return latents, image, traj, text, t


def _rope(pipe, frames):
    c = pipe.transformer.config
    return pipe._prepare_rotary_positional_embeddings(c.sample_height * 8, c.sample_width * 8, frames, "cpu")


@torch.no_grad()
def test_zero_projections_leave_the_base_transformer_bit_exact_and_trained_ones_steer_it(pipe_small):
    ours = pipe_small.pipe.transformer
    stock = CogVideoXTransformer3DModel.from_config(ours.config).eval()
    stock.load_state_dict(ours.state_dict())
    latents, image, traj, text, t = _tiny_branch_inputs(ours)
    rope = _rope(pipe_small.pipe, latents.shape[1])
    x = torch.cat([latents, image], dim=2)
    reference = stock(x, text, t, image_rotary_emb=rope, return_dict=False)[0]

    fresh = TrajectoryControlNet.from_transformer_config(ours.config).eval()  # zero-initialised projections
    fresh.load_state_dict({k: v for k, v in pipe_small.pipe.controlnet.state_dict().items() if "out_proj" not in k},
                          strict=False)
    residuals = fresh(latents, traj, text, t, image_rotary_emb=rope)
    assert len(residuals) == len(ours.transformer_blocks) and all(not r.any() for r in residuals)
    out = ours(x, text, t, image_rotary_emb=rope, controlnet_states=residuals, return_dict=False)[0]
    assert torch.equal(out, reference)

    trained = pipe_small.pipe.controlnet
    steered = ours(x, text, t, image_rotary_emb=rope, return_dict=False,
                   controlnet_states=trained(latents, traj, text, t, image_rotary_emb=rope))[0]
    assert (steered - reference).abs().max() > 1e-3
    # lock-step (one residual at a time) computes exactly what the authors' all-residuals-first order does
    lazy = ours(x, text, t, image_rotary_emb=rope, return_dict=False,
                controlnet_states=trained(latents, traj, text, t, image_rotary_emb=rope, lazy=True))[0]
    assert torch.equal(lazy, steered)
    # per-block strength: all zeros is the base model; switching off one block changes the result
    off = ours(x, text, t, image_rotary_emb=rope, return_dict=False, controlnet_weights=[0.0, 0.0],
               controlnet_states=trained(latents, traj, text, t, image_rotary_emb=rope))[0]
    assert torch.equal(off, reference)
    half = ours(x, text, t, image_rotary_emb=rope, return_dict=False, controlnet_weights=[1.0, 0.0],
                controlnet_states=trained(latents, traj, text, t, image_rotary_emb=rope))[0]
    assert not torch.equal(half, steered) and not torch.equal(half, reference)
    assert isinstance(ours, MagicMotionTransformer3DModel)


@torch.no_grad()
def test_with_zero_projections_the_whole_sampler_equals_stock_diffusers_i2v(pipe_small, small_shot):
    """Deterministic DDIM (no scheduler noise): a zero ControlNet must give stock CogVideoXImageToVideoPipeline's
    video bit for bit — prompt encoding, image latents, CFG, RoPE, stepping and decoding all match."""
    ours = pipe_small.pipe
    stock_transformer = CogVideoXTransformer3DModel.from_config(ours.transformer.config).eval()
    stock_transformer.load_state_dict(ours.transformer.state_dict())
    ddim = CogVideoXDDIMScheduler.from_config(ours.scheduler.config)
    zero = TrajectoryControlNet.from_transformer_config(ours.transformer.config).eval()
    parts = dict(tokenizer=ours.tokenizer, text_encoder=ours.text_encoder, vae=ours.vae)
    c = pipe_small.prepare(small_shot, params()).conditioning
    image = PIL.Image.fromarray(c.first_frame)
    frames, height, width = pipe_small.native_size
    common = dict(image=image, prompt="a red car", num_inference_steps=2, guidance_scale=6.0, output_type="np",
                  num_frames=frames, height=height, width=width,
                  max_sequence_length=ours.transformer.config.max_text_seq_length)
    stock = CogVideoXImageToVideoPipeline(**parts, transformer=stock_transformer, scheduler=ddim)
    stock.set_progress_bar_config(disable=True)
    expected = stock(**common, generator=torch.Generator().manual_seed(3)).frames[0]
    mm = MagicMotionPipeline(**parts, transformer=ours.transformer, controlnet=zero, scheduler=ddim)
    mm.set_progress_bar_config(disable=True)
    got = mm(**common, trajectory_maps=[PIL.Image.fromarray(f) for f in c.trajectory_map],
             generator=torch.Generator().manual_seed(3))
    assert np.array_equal(got, expected)


# --- conditioning on the real export (720×480, 49 frames: the native size, so no resampling) ------------------------


def _mask_rgb(mask: np.ndarray, ids) -> np.ndarray:
    """Recolour an instance mask with the palette at 50 % over black, computed from the hex codes."""
    out = np.zeros((*mask.shape, 3), np.float64)
    for eid in ids:
        h = cond.PALETTE_HEX[eid]
        out[mask == eid] = [int(h[i:i + 2], 16) / 2 for i in (0, 2, 4)]
    return out


def test_palette_colours_are_the_authors_half_opacity_supervision_colours():
    # spec §5.2: object 1 = 0.5 × #FF4040, 2 = 0.5 × #FFA1A0, 3 = 0.5 × #FF7633 (cv2 rounds halves to even)
    for eid, hexcode in ((1, "FF4040"), (2, "FFA1A0"), (3, "FF7633")):
        half = np.array([int(hexcode[i:i + 2], 16) for i in (0, 2, 4)]) / 2
        assert np.abs(np.array(cond.map_rgb(eid)) - half).max() <= 0.5
    assert len({cond.map_rgb(e) for e in range(1, cond.MAX_ENTITY_ID + 1)}) == cond.MAX_ENTITY_ID


def test_mask_frames_are_the_instance_masks_recoloured(native_shot):
    c = cond.build_conditioning(native_shot, "mask")
    ids = range(1, native_shot.num_entities + 1)
    assert c.trajectory_map.shape == (49, 480, 720, 3) and c.shot_frames.tolist() == list(range(1, 50))
    for j in (0, 17, 48):
        expected = _mask_rgb(native_shot.instance_mask[j], ids)
        assert np.abs(c.trajectory_map[j] - expected).max() <= 0.5


def _stroke_centre(drawn: np.ndarray, exact: float, span: tuple[float, float]) -> float | None:
    """Median centre (pixel-corner coordinates) of the vertical strokes near column ``exact`` in ``drawn`` (H, W) bool,
    over the rows inside ``span`` where the whole stroke is visible (other boxes drawn later may cover parts)."""
    lo = max(int(exact) - 6, 0)
    window = drawn[int(span[0]) + 4:int(span[1]) - 4, lo:int(exact) + 7]
    full = window.sum(axis=1) == 480 // 100 + 1  # cv2 draws a thickness-4 stroke over 5 pixels
    if not full.any():
        return None
    cols = np.arange(window.shape[1]) + lo + 0.5
    return float(np.median((window[full] * cols).sum(axis=1) / window[full].sum(axis=1)))


def test_box_outlines_sit_on_box_2d(native_shot):
    c = cond.build_conditioning(native_shot, "box")
    ids = list(range(1, native_shot.num_entities + 1))
    assert np.abs(c.trajectory_map[0] - _mask_rgb(native_shot.instance_mask[0], ids)).max() <= 0.5
    checked = 0
    for j in (1, 24, 48):
        for eid in ids:
            if not native_shot.box_2d_valid[j, eid - 1]:
                continue
            drawn = (c.trajectory_map[j] == cond.map_rgb(eid)).all(axis=-1)
            x0, y0, x1, y1 = native_shot.box_2d[j, eid - 1]
            for mask, exact, span in ((drawn, x0, (y0, y1)), (drawn, x1, (y0, y1)),
                                      (drawn.T, y0, (x0, x1)), (drawn.T, y1, (x0, x1))):
                centre = _stroke_centre(mask, exact, span)
                if centre is not None:
                    assert abs(centre - exact) <= 1.0, (j, eid, centre, exact)
                    checked += 1
    assert checked >= 24


def test_sparse_mode_leaves_non_key_frames_black(native_shot):
    c = cond.build_conditioning(native_shot, "sparse_box", key_frames=[13, 37])
    assert c.key_frames == [12, 36]
    drawn = [j for j in range(49) if c.trajectory_map[j].any()]
    assert drawn == [0, 12, 36]
    box = cond.build_conditioning(native_shot, "box")
    assert np.array_equal(c.trajectory_map[12], box.trajectory_map[12])
    default = cond.build_conditioning(native_shot, "sparse_box")
    assert default.key_frames == [1, 48]  # the authors' demo choice


def test_time_map_samples_the_frame_range():
    assert cond.time_map(49, 49).tolist() == list(range(49))
    m = cond.time_map(97, 49)
    assert m[0] == 0 and m[-1] == 96 and np.all(np.diff(m) == 2)
    assert cond.time_map(13, 49)[[0, 4, 48]].tolist() == [0, 1, 12]


# --- bad input -------------------------------------------------------------------------------------------------------


def test_more_entities_than_palette_colours_is_refused(small_shot):
    n = cond.MAX_ENTITY_ID + 1
    reps = -(-n // small_shot.num_entities)
    meta = small_shot.meta.model_dump()
    entities = [{**meta["entities"][k % small_shot.num_entities], "id": k + 1, "name": f"E{k + 1}"} for k in range(n)]
    names = ("entity_world", "entity_position", "entity_quaternion_wxyz", "entity_cam_opencv", "track_2d",
             "track_depth", "track_in_frame", "track_visible", "box_2d", "box_2d_valid", "box_3d_world")
    per_entity = {k: np.concatenate([getattr(small_shot, k)] * reps, axis=1)[:, :n] for k in names}
    shot = shot_variant(small_shot, {"entities": entities}, **per_entity)
    with pytest.raises(PipelineInputError, match="entities: entity id 22"):
        cond.build_conditioning(shot, "box", **dict(height=32, width=48, num_frames=9))


def test_an_entity_never_visible_is_refused_with_its_name(small_shot):
    mask = small_shot.instance_mask.copy()
    mask[mask == 2] = 0
    valid = small_shot.box_2d_valid.copy()
    valid[:, 1] = False
    boxes = small_shot.box_2d.copy()
    boxes[:, 1] = 0.0
    shot = shot_variant(small_shot, instance_mask=mask, box_2d_valid=valid, box_2d=boxes)
    name = small_shot.meta.entities[1].name
    with pytest.raises(PipelineInputError, match=f"'{name}' \\(id 2\\) is never visible"):
        cond.build_conditioning(shot, "box")
    assert cond.build_conditioning(shot, "box", entities=[1, 3]).entity_ids == [1, 3]  # the fix works


def test_sparse_key_frames_outside_the_range_are_refused(small_shot):
    last = int(small_shot.frame_numbers[-1])
    with pytest.raises(PipelineInputError, match=f"options.key_frames: frame {last + 1} is outside"):
        cond.build_conditioning(small_shot, "sparse_box", key_frames=[3, last + 1])
    with pytest.raises(PipelineInputError, match="at most 10"):
        cond.build_conditioning(small_shot, "sparse_box", key_frames=list(range(2, 14)))


def test_a_shot_without_instance_masks_is_refused(small_shot):
    renders = {**small_shot.meta.renders.model_dump(), "instance_mask": False}
    shot = shot_variant(small_shot, {"renders": renders}, instance_mask=None)
    with pytest.raises(PipelineInputError, match="instance_mask"):
        cond.build_conditioning(shot, "mask")


# --- the pipeline ----------------------------------------------------------------------------------------------------


def test_same_seed_same_video_and_cancel_stops_before_decoding(pipe_small, small_shot):
    p = params()
    inputs = pipe_small.prepare(small_shot, p)
    events = []
    first = pipe_small.generate(inputs, p, lambda *e: events.append(e))
    assert first.frames.shape == (9, 32, 48, 3) and first.frames.dtype == np.uint8 and first.fps == 8.0
    assert events == [("conditioning", 0, 1), ("denoising", 1, 2), ("denoising", 2, 2), ("decoding", 0, 1)]
    assert np.array_equal(pipe_small.generate(inputs, p, lambda *e: None).frames, first.frames)
    assert not np.array_equal(pipe_small.generate(inputs, params(seed=8), lambda *e: None).frames, first.frames)
    weaker = pipe_small.generate(inputs, params(strength=0.0), lambda *e: None)
    assert not np.array_equal(weaker.frames, first.frames)

    seen = []

    def cancel(stage, step, steps):
        seen.append(stage)
        if stage == "denoising":
            raise Cancelled

    with pytest.raises(Cancelled):
        pipe_small.generate(inputs, params(steps=5), cancel)
    assert seen == ["conditioning", "denoising"]


def test_lock_step_runs_under_block_level_group_offloading(preset, tiny_small, pipe_small, small_shot):
    """Group-offloading hooks sit on every block; the lazy ControlNet must still run its blocks through them."""
    p = params()
    reference = pipe_small.generate(pipe_small.prepare(small_shot, p), p, lambda *e: None).frames
    hooked = PIPELINE.load(preset, tiny_small / "base", tiny_small / "adapter")
    for module in (hooked.pipe.transformer, hooked.pipe.controlnet):  # CPU -> CPU: the hooks run, no streams
        apply_group_offloading(module, onload_device=torch.device("cpu"), offload_type="block_level",
                               num_blocks_per_group=1)
    assert np.array_equal(hooked.generate(hooked.prepare(small_shot, p), p, lambda *e: None).frames, reference)


def test_options_variants_and_memory_modes_are_checked(preset, tiny_small, pipe_small, small_shot):
    with pytest.raises(PipelineInputError, match="options.key_fram: Extra inputs"):
        pipe_small.prepare(small_shot, params(options={"key_fram": [3]}))
    with pytest.raises(PipelineInputError, match="options.block_strength: 3 weights"):
        pipe_small.prepare(small_shot, params(options={"block_strength": [1.0, 1.0, 1.0]}))
    with pytest.raises(PipelineInputError, match="loaded with stage 'box'"):
        pipe_small.prepare(small_shot, params(variant="mask"))
    with pytest.raises(PipelineInputError, match="memory_mode"):
        PIPELINE.load(preset, tiny_small / "base", tiny_small / "adapter", memory_mode="vram")
    sparse = PIPELINE.load(preset, tiny_small / "base", tiny_small / "adapter", variant="sparse_box",
                           memory_mode="group_offload")
    assert sparse.applied_memory_mode == "resident"  # no CUDA here: validated, recorded, not applied
    inputs = sparse.prepare(small_shot, params(variant="sparse_box", options={"key_frames": [7]}))
    assert inputs.conditioning.mode == "sparse_box" and inputs.conditioning.key_frames == [4]
    assert sparse.preview(small_shot, params(options={"key_frames": [7]})).shape == (9, 32, 48, 3)
    assert sparse.resident_bytes() > 0


@pytest.mark.slow  # the one native-size run: the tiny VAE alone takes ~1 min at 49×480×720 on 2 cores
def test_native_size_run_from_the_real_bundle(preset, tmp_path_factory, native_shot):
    root = tmp_path_factory.mktemp("magicmotion-native")
    PIPELINE.build_tiny(root, frames=49, height=480, width=720)
    pipe = PIPELINE.load(preset, root / "base", root / "adapter")
    p = params(options={"vae_tiling": False})
    video = pipe.generate(pipe.prepare(native_shot, p), p, lambda *e: None)
    assert video.frames.shape == (49, 480, 720, 3) and video.frames.dtype == np.uint8
    assert video.shot_frames.tolist() == native_shot.frame_numbers.astype(float).tolist()
    assert video.fps == 8.0 and video.metadata["variant"] == "box" and video.metadata["steps"] == 2
    assert video.frames.std() > 0
