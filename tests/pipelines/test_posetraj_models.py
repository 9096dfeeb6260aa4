"""PoseTraj models, strict loading and conditioning, on tiny weights and synthetic/real shots (CPU)."""

import cv2
import numpy as np
import pytest
import torch
from diffusers import UNetSpatioTemporalConditionModel
from safetensors.torch import load_file, save_file
from trajplate.conditioning import posetraj as cond
from trajplate.pipelines.posetraj import tiny
from trajplate.pipelines.posetraj.loading import ControlNetFormatError, load_controlnet
from trajplate.pipelines.posetraj.models import ControlNetSDVModel, UNetSpatioTemporalConditionControlNetModel
from trajplate.pipelines.tiny_parts import tiny_svd_unet_config
from trajplate.shot import load_shot


@pytest.fixture(scope="module")
def unets():
    torch.manual_seed(0)
    stock = UNetSpatioTemporalConditionModel(**tiny_svd_unet_config(num_frames=14)).eval()
    ours = UNetSpatioTemporalConditionControlNetModel(**tiny_svd_unet_config(num_frames=14)).eval()
    ours.load_state_dict(stock.state_dict())
    return stock, ours


def _inputs(batch=1, frames=3):
    g = torch.Generator().manual_seed(1)
    return (torch.randn(batch, frames, 8, 8, 8, generator=g), torch.tensor(2.5), torch.randn(batch, 1, 32, generator=g),
            torch.tensor([[6.0, 128.0, 0.02]] * batch)), torch.rand(batch, frames, 3, 64, 64, generator=g) * 2 - 1


def test_zero_initialised_controlnet_leaves_svd_output_bit_exact(unets):
    stock, ours = unets
    args, maps = _inputs(batch=2)
    plain = ControlNetSDVModel.from_unet(ours, conditioning_embedding_out_channels=tiny.TINY_EMBEDDING_CHANNELS)
    camera = ControlNetSDVModel.from_unet(ours, camera_dim=12,
                                          conditioning_embedding_out_channels=tiny.TINY_EMBEDDING_CHANNELS)
    with torch.no_grad():
        reference = stock(*args).sample
        assert torch.equal(ours(*args).sample, reference)
        with ours.controlled(plain, maps, None, 1.0):
            assert torch.equal(ours(*args).sample, reference)
        with ours.controlled(camera, maps, torch.randn(2, 3, 12), 1.0):
            assert torch.equal(ours(*args).sample, reference)
        trained = tiny.tiny_controlnet(ours)  # non-zero output convs: the residuals must reach the UNet
        with ours.controlled(trained, maps, None, 1.0):
            assert (ours(*args).sample - reference).abs().max() > 1e-3
        with ours.controlled(trained, maps, None, 0.0):
            assert torch.equal(ours(*args).sample, reference)


def test_camera_projection_starts_as_identity(unets):
    controlnet = ControlNetSDVModel.from_unet(unets[1], camera_dim=12, conditioning_embedding_out_channels=(8, 8))
    weight = controlnet.controlnet_cond_embedding.cc_projection.weight
    assert weight.shape == (8, 8 + 12)
    assert torch.equal(weight[:, :8], torch.eye(8)) and weight[:, 8:].abs().sum() > 0
    assert not controlnet.controlnet_cond_embedding.cc_projection.bias.any()


def test_authors_parameter_names(unets):
    names = set(ControlNetSDVModel.from_unet(unets[1], camera_dim=12).state_dict())
    for key in ("conv_in.weight", "time_embedding.linear_1.weight", "add_embedding.linear_2.bias",
                "controlnet_cond_embedding.conv_in.weight", "controlnet_cond_embedding.blocks.5.weight",
                "controlnet_cond_embedding.conv_out.weight", "controlnet_cond_embedding.cc_projection.weight",
                "controlnet_down_blocks.0.weight", "controlnet_mid_block.weight",
                "down_blocks.0.attentions.0.temporal_transformer_blocks.0.attn1.to_q.weight"):
        assert key in names, key
    assert not any(k.startswith(("up_blocks", "conv_out", "conv_norm_out")) for k in names)


@pytest.mark.parametrize("camera", [False, True])
def test_controlnet_folder_loads_strictly(unets, tmp_path, camera):
    saved = tiny.tiny_controlnet(unets[0], camera=camera)
    folder = tmp_path / "checkpoint-100" / "controlnet"  # the authors' training output layout
    saved.save_pretrained(folder)
    loaded = load_controlnet(tmp_path / "checkpoint-100", torch.float32)
    assert loaded.config.camera_dim == (12 if camera else 0)
    for key, value in saved.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key

    weights = folder / "diffusion_pytorch_model.safetensors"
    state = load_file(weights)
    save_file({**state, "controlnet_extra.weight": torch.zeros(1)}, weights)
    with pytest.raises(ControlNetFormatError, match="unexpected.*controlnet_extra"):
        load_controlnet(folder, torch.float32)
    del state["controlnet_mid_block.bias"]
    save_file(state, weights)
    with pytest.raises(ControlNetFormatError, match="missing.*controlnet_mid_block.bias"):
        load_controlnet(folder, torch.float32)


def _authors_reference(points: dict[str, list[list[int]]], size=(576, 320), frames=14) -> np.ndarray:
    """Independent drawing in the authors' way: BGR canvas, integer points, per-step loop, one BGR→RGB at the end."""
    maps = []
    for i in range(frames - 1):
        canvas = np.zeros((size[1], size[0], 3), np.uint8)
        for track in points.values():
            cv2.line(canvas, tuple(track[i]), tuple(track[i + 1]), (0, 0, 255), 3)
            cv2.circle(canvas, tuple(track[i + 1]), 3, (0, 255, 0), -1)
        maps.append(cv2.cvtColor(canvas, cv2.COLOR_BGR2RGB))
    maps.append(np.zeros_like(maps[0]))
    return np.stack(maps)


def test_rasterised_maps_equal_the_authors_drawing():
    rng = np.random.default_rng(3)
    integer = rng.integers([0, 0], [576, 320], size=(14, 3, 2))
    integer[:, 2] = integer[:, 2] + [700, 0]  # a track off the right edge: clipped, as OpenCV clips theirs
    tracks = cond.DragTracks(integer + rng.uniform(0, 0.999, size=integer.shape), np.ones((14, 3), bool),
                             (576, 320), np.array([1, 2, 3], np.int16))  # corner coords inside those pixels
    maps = cond.rasterise(tracks)
    reference = _authors_reference({str(n): integer[:, n].tolist() for n in range(3)})
    assert maps.shape == (14, 320, 576, 3) and maps.dtype == np.uint8
    np.testing.assert_array_equal(maps, reference)
    assert not maps[-1].any() and (maps[0] == [255, 0, 0]).all(-1).any() and (maps[0] == [0, 255, 0]).all(-1).any()


def test_invisible_steps_are_not_drawn():
    coords = np.tile(np.array([[100.5, 100.5]]), (14, 1, 1)) + np.arange(14)[:, None, None] * [5.0, 0.0]
    valid = np.ones((14, 1), bool)
    valid[5] = False
    maps = cond.rasterise(cond.DragTracks(coords, valid, (576, 320), np.array([1], np.int16)))
    assert not maps[4].any() and not maps[5].any() and maps[3].any() and maps[6].any()


def test_track_coordinates_rescale_to_native():
    tracks = cond.DragTracks(np.array([[[0.0, 0.0], [360.0, 240.0], [720.0, 480.0], [36.0, 48.0]]]),
                             np.ones((1, 4), bool), (720, 480), np.array([1, 1, 1, 1], np.int16))
    native = tracks.rescaled((576, 320))
    np.testing.assert_allclose(native.coords[0], [[0, 0], [288, 160], [576, 320], [28.8, 32.0]])
    assert native.size == (576, 320)


def test_camera_vectors_static_zero_and_relative_motion():
    w2c = np.tile(np.eye(4), (3, 1, 1))
    w2c[:, :3, 3] = [1.0, 2.0, 3.0]
    assert not cond.camera_vectors(w2c).any()
    w2c[2, :3, 3] = [1.0, 2.0, 5.0]  # the camera moved 2 m backwards along its own z (w2c t grows)
    vectors = cond.camera_vectors(w2c)
    np.testing.assert_allclose(vectors[2], [0] * 9 + [0, 0, 2], atol=1e-6)


def test_shot_tracks_follow_the_exported_entities(shot_bundle):
    shot = load_shot(shot_bundle)
    tracks, shot_frames = cond.shot_tracks(shot)
    index = cond.time_map(shot.time_s, 14)
    n = shot.num_entities
    assert tracks.coords.shape[0] == 14 and tracks.size == (shot.width, shot.height)
    np.testing.assert_array_equal(tracks.coords[:, :n], shot.track_2d[index])
    np.testing.assert_array_equal(tracks.valid[:, :n], shot.track_visible[index])
    np.testing.assert_array_equal(shot_frames, shot.frame_numbers[index])
    surface = tracks.coords.shape[1] - n
    assert surface >= 2 * n  # several surface points for each entity visible on frame 0
    # A valid surface point lies on its own entity in the exported mask of that frame.
    for t in range(14):
        for k in np.flatnonzero(tracks.valid[t, n:]) + n:
            col, row = np.floor(tracks.coords[t, k]).astype(int)
            assert shot.instance_mask[index[t], row, col] == tracks.entity[k]
