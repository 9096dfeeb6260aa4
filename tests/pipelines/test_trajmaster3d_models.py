"""3DTrajMaster models: the injector attention quirk, the authors' weight layouts, annealing parity (tiny, CPU)."""

import json
import shutil

import pytest
import torch
import torch.nn.functional as F
from diffusers import CogVideoXTransformer3DModel
from diffusers.models.attention import Attention
from diffusers.models.attention_processor import CogVideoXAttnProcessor2_0
from diffusers.models.embeddings import apply_rotary_emb, get_3d_rotary_pos_embed
from peft.tuners.tuners_utils import BaseTunerLayer
from safetensors.torch import load_file, save_file
from trajplate.pipelines.trajmaster3d.loading import (
    INJECTOR_FOLDER,
    LORA_FOLDER,
    LORA_WEIGHT_NAME,
    load_pipeline,
    save_tiny_weights,
)
from trajplate.pipelines.trajmaster3d.transformer import InjectorAttnProcessor, TrajMasterTransformer3DModel
from trajplate.weights import WeightsError

# The authors' sizes: 226 text tokens, 13 latent frames x (30 x 45 video + 3 x 50 entity tokens) = 19,726.
TEXT, FRAMES, VIDEO, ENTITY = 226, 13, 1350, 150
HEADS, HEAD_DIM = 2, 16


def _attention():
    torch.manual_seed(0)
    return Attention(query_dim=HEADS * HEAD_DIM, dim_head=HEAD_DIM, heads=HEADS, qk_norm="layer_norm", eps=1e-6,
                     bias=True, out_bias=True).eval()


def _reference(attn, hidden, text, rope, *, reorder_values):
    """The authors' quirk by explicit index permutation: q and k (and v if asked) to [text | video | entity]."""
    order = list(range(TEXT))
    per_frame = VIDEO + ENTITY
    order += [TEXT + f * per_frame + v for f in range(FRAMES) for v in range(VIDEO)]
    order += [TEXT + f * per_frame + VIDEO + e for f in range(FRAMES) for e in range(ENTITY)]
    order = torch.tensor(order)
    joint = torch.cat([text, hidden], dim=1)
    q, k, v = (p(joint).view(1, -1, HEADS, HEAD_DIM).transpose(1, 2) for p in (attn.to_q, attn.to_k, attn.to_v))
    q, k = attn.norm_q(q)[:, :, order], attn.norm_k(k)[:, :, order]
    video = slice(TEXT, TEXT + FRAMES * VIDEO)
    q[:, :, video] = apply_rotary_emb(q[:, :, video], rope)
    k[:, :, video] = apply_rotary_emb(k[:, :, video], rope)
    if reorder_values:
        v = v[:, :, order]
    out = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(1, -1, HEADS * HEAD_DIM)
    out = attn.to_out[0](out)
    return out[:, TEXT:], out[:, :TEXT]


@torch.no_grad()
def test_injector_processor_reorders_queries_and_keys_but_not_values():
    attn = _attention()
    processor = InjectorAttnProcessor(FRAMES, VIDEO, ENTITY)
    assert processor.special_length(TEXT) == 19_726
    generator = torch.Generator().manual_seed(1)
    hidden = torch.randn(1, FRAMES * (VIDEO + ENTITY), HEADS * HEAD_DIM, generator=generator)
    text = torch.randn(1, TEXT, HEADS * HEAD_DIM, generator=generator)
    rope = get_3d_rotary_pos_embed(HEAD_DIM, ((0, 0), (30, 45)), (30, 45), FRAMES)

    out, out_text = processor(attn, hidden, text, image_rotary_emb=rope)
    expected, expected_text = _reference(attn, hidden, text, rope, reorder_values=False)
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(out_text, expected_text, rtol=1e-4, atol=1e-5)
    values_too, _ = _reference(attn, hidden, text, rope, reorder_values=True)
    assert (values_too - out).abs().max() > 1e-2  # the test tells the two orders apart


@torch.no_grad()
def test_injector_processor_is_plain_attention_at_other_lengths():
    attn = _attention()
    processor = InjectorAttnProcessor(FRAMES, VIDEO, ENTITY)
    generator = torch.Generator().manual_seed(2)
    frames, video = 2, 6
    hidden = torch.randn(2, frames * video, HEADS * HEAD_DIM, generator=generator)
    text = torch.randn(2, 7, HEADS * HEAD_DIM, generator=generator)
    rope = get_3d_rotary_pos_embed(HEAD_DIM, ((0, 0), (2, 3)), (2, 3), frames)
    for kwargs in ({"image_rotary_emb": rope}, {}):
        ours = processor(attn, hidden, text, **kwargs)
        stock = CogVideoXAttnProcessor2_0()(attn, hidden.clone(), text.clone(), **kwargs)
        for a, b in zip(ours, stock, strict=True):
            assert torch.equal(a, b)


@pytest.fixture(scope="module")
def tiny_small(tmp_path_factory):
    """Tiny weights in the authors' layouts at 64x96 px, 9 frames (3 latent frames): the injector runs small."""
    root = tmp_path_factory.mktemp("tm3d-small")
    save_tiny_weights(root, sample_height=8, sample_width=12, sample_frames=9)
    return root


def test_tiny_injector_checkpoint_loads_with_zero_missing_keys(tiny_small):
    injector_dir = tiny_small / "adapter" / INJECTOR_FOLDER
    assert json.loads((injector_dir / "config.json").read_text())["_class_name"] == "CogVideoXTransformer3DModel"
    assert (injector_dir / "diffusion_pytorch_model.safetensors.index.json").is_file()  # sharded like the authors'
    model, info = TrajMasterTransformer3DModel.from_pretrained(injector_dir, output_loading_info=True)
    assert info["missing_keys"] == [] and info["unexpected_keys"] == [] and info["mismatched_keys"] == []
    assert model.injector_blocks == [0, 2]
    assert (model.transformer_blocks[0].attn_null_feature != 0).any()  # loaded, not the zero init


def test_lora_goes_through_peft_onto_attn1_only(tiny_small):
    pipe = load_pipeline(tiny_small / "base", tiny_small / "adapter")
    lora_modules = [name for name, m in pipe.transformer.named_modules() if isinstance(m, BaseTunerLayer)]
    assert len(lora_modules) == 3 * 4 and all(".attn1." in name for name in lora_modules)
    assert type(pipe.scheduler).__name__ == "CogVideoXDPMScheduler"
    assert pipe.scheduler.config.timestep_spacing == "trailing"


def _copy_adapter(tiny_small, tmp_path):
    shutil.copytree(tiny_small, tmp_path / "w")
    return tmp_path / "w"


def test_missing_injector_key_fails_loudly(tiny_small, tmp_path):
    root = _copy_adapter(tiny_small, tmp_path)
    injector_dir = root / "adapter" / INJECTOR_FOLDER
    index_file = injector_dir / "diffusion_pytorch_model.safetensors.index.json"
    index = json.loads(index_file.read_text())
    key = "transformer_blocks.2.pose_fuse_layer.weight"
    shard = injector_dir / index["weight_map"].pop(key)
    tensors = load_file(shard)
    del tensors[key]
    save_file(tensors, shard, metadata={"format": "pt"})
    index_file.write_text(json.dumps(index))
    with pytest.raises(WeightsError, match=r"missing transformer_blocks\.2\.pose_fuse_layer\.weight"):
        load_pipeline(root / "base", root / "adapter")


def test_unexpected_lora_key_fails_loudly(tiny_small, tmp_path):
    root = _copy_adapter(tiny_small, tmp_path)
    lora_file = root / "adapter" / LORA_FOLDER / LORA_WEIGHT_NAME
    tensors = load_file(lora_file)
    tensors["transformer.transformer_blocks.0.attn_injector.to_q.lora_A.weight"] = torch.zeros(4, 32)
    save_file(tensors, lora_file)
    with pytest.raises(WeightsError, match=r"unexpected transformer\.transformer_blocks\.0\.attn_injector"):
        load_pipeline(root / "base", root / "adapter")


@torch.no_grad()
def test_without_poses_the_model_is_stock_cogvideox(tiny_small):
    injector_dir = tiny_small / "adapter" / INJECTOR_FOLDER
    ours = TrajMasterTransformer3DModel.from_pretrained(injector_dir).eval()
    stock = CogVideoXTransformer3DModel.from_pretrained(injector_dir).eval()  # ignores the injector tensors
    generator = torch.Generator().manual_seed(3)
    latents = torch.randn(2, 3, 4, 8, 12, generator=generator)
    text = torch.randn(2, 226, 32, generator=generator)
    rope = get_3d_rotary_pos_embed(16, ((0, 0), (4, 6)), (4, 6), 3)
    timestep = torch.tensor([900, 900])
    a = ours(latents, text, timestep, image_rotary_emb=rope).sample
    b = stock(latents, text, timestep, image_rotary_emb=rope).sample
    assert torch.equal(a, b)
    with pytest.raises(ValueError, match="native"):
        ours(latents[:, :2], text, timestep, image_rotary_emb=rope, pose_embeds=torch.zeros(1, 1, 2, 12),
             entity_embeds=torch.zeros(1, 1, 226, 32), entity_attention_mask=torch.ones(1, 1, 226),
             empty_text_embeds=torch.zeros(1, 226, 32))


def _sample(pipe, seed=0, **kwargs):
    poses = torch.tensor([[0.0, 0, -1, 0, 1, 0, 1, 0, 0, 0.5, 0.2, 6.0]]).repeat(3, 1)[None, None]
    return pipe("a robot is moving in the desert", ["a robot"], poses, num_inference_steps=3, output_type="latent",
                generator=torch.Generator().manual_seed(seed), **kwargs).frames


def test_one_transformer_annealing_matches_the_authors_two_copies(tiny_small, capsys):
    """Adapter switching (ours) vs the authors' fused LoRA + plain deep copy, float32: same result to rounding."""
    ours = load_pipeline(tiny_small / "base", tiny_small / "adapter")
    authors = load_pipeline(tiny_small / "base", tiny_small / "adapter", annealing="two_copies", fused_lora_scale=0.6)
    a = _sample(ours, annealed_sample_step=1, lora_scale=0.6)
    b = _sample(authors, annealed_sample_step=1)
    difference = (a - b).abs().max().item()
    with capsys.disabled():
        print(f"\n3DTrajMaster annealing, one transformer vs two copies (tiny, float32, 3 steps): max |Δ latent| = "
              f"{difference:.2e} of max |latent| {a.abs().max().item():.2f}")
    assert difference < 1e-4
    no_lora = _sample(ours, annealed_sample_step=1, lora_scale=0.0)
    assert (no_lora - a).abs().max() > 100 * max(difference, 1e-7)  # the LoRA does matter in these steps
