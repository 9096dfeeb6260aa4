"""TrajectoryCrafter's Ref-DiT transformer and VAE chunking on tiny random models through the real loading code."""

from __future__ import annotations

import json

import pytest
import torch
from diffusers import AutoencoderKLCogVideoX, CogVideoXTransformer3DModel
from safetensors.torch import load_file, save_file
from trajplate.pipelines.trajectorycrafter.loading import (
    AUTHORS_CLASS_NAME,
    check_transformer_keys,
    save_tiny_weights,
    tiny_transformer,
)
from trajplate.pipelines.trajectorycrafter.pipeline import AUTHORS_SAMPLE_FRAMES_PER_CHUNK, TrajectoryCrafterPipeline
from trajplate.pipelines.trajectorycrafter.transformer import TrajectoryCrafterTransformer3DModel
from trajplate.weights import WeightsError


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("crafter")
    save_tiny_weights(root, num_layers=4)
    return root


def _inputs(seed=0, frames=2, h=6, w=8, ref_frames=1):
    g = torch.Generator().manual_seed(seed)
    return dict(
        hidden_states=torch.randn(2, frames, 4, h, w, generator=g),
        inpaint_latents=torch.randn(2, frames, 5, h, w, generator=g),
        cross_latents=torch.randn(2, ref_frames, 4, h, w, generator=g),
        encoder_hidden_states=torch.randn(2, 16, 32, generator=g),
        timestep=torch.tensor([500, 500]),
    )


def test_authors_layout_loads_with_zero_missing_keys(tiny_root):
    adapter = tiny_root / "adapter"
    config = json.loads((adapter / "config.json").read_text())
    assert config["_class_name"] == AUTHORS_CLASS_NAME and config["is_train_cross"] and config["in_channels"] == 9
    assert (adapter / "diffusion_pytorch_model.safetensors.index.json").is_file()  # sharded like the real one
    check_transformer_keys(adapter)
    model, info = TrajectoryCrafterTransformer3DModel.from_pretrained(adapter, output_loading_info=True)
    assert not any(info[k] for k in ("missing_keys", "unexpected_keys", "mismatched_keys"))
    names = set(model.state_dict())
    assert {"ref_patch_embed.proj.weight", "perceiver_cross_attention.1.to_kv.weight",
            "perceiver_cross_attention.0.norm1.bias"} <= names
    assert len(model.perceiver_cross_attention) == 2  # 4 layers, interval 2: after blocks 0 and 2


def test_key_check_names_missing_and_unexpected_keys(tiny_root, tmp_path):
    model = TrajectoryCrafterTransformer3DModel.from_pretrained(tiny_root / "adapter")
    state = {k: v.contiguous() for k, v in model.state_dict().items() if not k.startswith("perceiver_cross_attention.1")}
    state["perceiver_cross_attention.9.gate"] = torch.zeros(1)
    (tmp_path / "config.json").write_text((tiny_root / "adapter" / "config.json").read_text())
    save_file(state, tmp_path / "diffusion_pytorch_model.safetensors")
    with pytest.raises(WeightsError, match=r"missing perceiver_cross_attention\.1\..*unexpected perceiver_cross_attention\.9\.gate"):
        check_transformer_keys(tmp_path)


def test_zeroed_perceivers_equal_the_plain_inpainting_transformer(tiny_root):
    crafter = TrajectoryCrafterTransformer3DModel.from_pretrained(tiny_root / "adapter")
    stock_config = {k: v for k, v in crafter.config.items() if not k.startswith(("_", "cross_attn", "is_train",
                                                                                  "add_noise"))}
    plain = CogVideoXTransformer3DModel(**stock_config).eval()
    assert set(plain.load_state_dict(crafter.state_dict(), strict=False).unexpected_keys) == {
        k for k in crafter.state_dict() if k.startswith(("ref_patch_embed", "perceiver_cross_attention"))}
    x = _inputs()
    with torch.no_grad():
        live = crafter(**x, return_dict=False)[0]
        for module in crafter.perceiver_cross_attention:
            module.to_out.weight.zero_()
        zeroed = crafter(**x, return_dict=False)[0]
        expected = plain(hidden_states=torch.cat([x["hidden_states"], x["inpaint_latents"]], dim=2),
                         encoder_hidden_states=x["encoder_hidden_states"], timestep=x["timestep"],
                         return_dict=False)[0]
    torch.testing.assert_close(zeroed, expected, rtol=0, atol=0)
    assert (live - expected).abs().max() > 1e-3  # the Perceivers do act when not zeroed


def test_perceiver_matches_the_authors_explicit_softmax():
    model = tiny_transformer(num_layers=2, seed=3)
    attn = model.perceiver_cross_attention[0]
    g = torch.Generator().manual_seed(1)
    ref, video = torch.randn(2, 7, 32, generator=g), torch.randn(2, 11, 32, generator=g)
    with torch.no_grad():
        q = attn.to_q(attn.norm2(video)).unflatten(-1, (2, 16)).transpose(1, 2)
        k, v = (t.unflatten(-1, (2, 16)).transpose(1, 2) for t in attn.to_kv(attn.norm1(ref)).chunk(2, -1))
        s = 16 ** -0.25
        weight = torch.softmax(((q * s) @ (k * s).transpose(-2, -1)).float(), dim=-1)
        expected = attn.to_out((weight @ v).permute(0, 2, 1, 3).reshape(2, 11, -1))
        torch.testing.assert_close(attn(ref, video), expected, rtol=1e-5, atol=1e-6)


def test_missing_inputs_are_named():
    model = tiny_transformer(num_layers=2)
    x = _inputs()
    with pytest.raises(ValueError, match="cross_latents"):
        model(**{**x, "cross_latents": None})
    with pytest.raises(ValueError, match="9 \\(noise"):
        model(**{**x, "inpaint_latents": None})


def test_vae_encodes_the_reference_in_the_authors_4_frame_chunks(tiny_root):
    """The CogVideoX-Fun VAE encodes 4 frames per causal chunk (10 = 6 + 4); diffusers' default is 8 (10 in one
    chunk). Per-chunk GroupNorm makes them differ, so the pipeline sets the authors' chunking."""
    vae = AutoencoderKLCogVideoX.from_pretrained(tiny_root / "base" / "vae").eval()
    clip = torch.rand(1, 3, 10, 32, 48, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        diffusers_default = vae.encode(clip).latent_dist.mode()
        TrajectoryCrafterPipeline(None, None, vae, None, None)
        assert vae.num_sample_frames_batch_size == AUTHORS_SAMPLE_FRAMES_PER_CHUNK
        authors = vae.encode(clip).latent_dist.mode()
        first, cache = vae.encoder(clip[:, :, :6])
        second, _ = vae.encoder(clip[:, :, 6:], conv_cache=cache)
        by_hand = vae.quant_conv(torch.cat([first, second], 2)) if vae.quant_conv is not None else torch.cat(
            [first, second], 2)
    assert authors.shape[2] == diffusers_default.shape[2] == 3
    torch.testing.assert_close(authors, by_hand.chunk(2, dim=1)[0])
    assert (authors - diffusers_default).abs().max() > 1e-4


def test_tiny_weights_are_a_real_safetensors_checkpoint(tiny_root):
    index = json.loads((tiny_root / "adapter" / "diffusion_pytorch_model.safetensors.index.json").read_text())
    shard = tiny_root / "adapter" / sorted(set(index["weight_map"].values()))[0]
    assert load_file(shard)
