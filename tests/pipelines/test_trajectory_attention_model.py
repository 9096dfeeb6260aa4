"""Trajectory Attention's UNet branch, processor and adapter converter on tiny models (CPU)."""

import math

import pytest
import torch
from accelerate import init_empty_weights
from diffusers import UNetSpatioTemporalConditionModel
from diffusers.models.attention_processor import Attention
from trajplate.pipelines.tiny_parts import tiny_svd_unet_config
from trajplate.pipelines.trajectory_attention.attention import TrajectoryAttnProcessor, TrajectoryControl
from trajplate.pipelines.trajectory_attention.convert import (
    ADAPTER_FILE,
    AdapterFormatError,
    branch_parameter_names,
    convert_adapter,
    read_adapter,
    save_converted,
)
from trajplate.pipelines.trajectory_attention.unet import TrajectoryAttentionUNet

CONFIG = tiny_svd_unet_config(num_frames=25)


def tiny_unet(seed=0):
    torch.manual_seed(seed)
    return TrajectoryAttentionUNet(**CONFIG).eval()


def test_svd_xt_has_16_branches_80_tensors_in_down_up_mid_order():
    with init_empty_weights():
        unet = TrajectoryAttentionUNet()  # SVD-XT's config (the class defaults)
    names = branch_parameter_names(dict(unet.config))
    assert len(names) == 80 and len(unet.branch_names()) == 16
    assert sum(p.numel() for n, p in unet.named_parameters() if "trajectory" in n) == pytest.approx(49.6e6, rel=1e-3)
    # specs §2.5: down blocks (3 × 2 modules), then up blocks (3 × 3), then the mid block, 5 tensors each.
    blocks = [name.split(".")[0] for name in names[::5]]
    assert blocks == ["down_blocks"] * 6 + ["up_blocks"] * 9 + ["mid_block"]
    assert [name.rsplit("attn_trajectory.", 1)[1] for name in names[:5]] == [
        "to_q.weight", "to_k.weight", "to_v.weight", "to_out.0.weight", "to_out.0.bias"]
    # The authors' loader fills parameters whose name contains "trajectory", in named_parameters() order.
    assert names == [n for n, _ in unet.named_parameters() if "trajectory" in n]


def test_converter_round_trip_puts_each_listed_tensor_on_its_parameter(tmp_path):
    source = tiny_unet(seed=1)
    authors_list = [p.detach().clone() for n, p in source.named_parameters() if "trajectory" in n]
    torch.save(authors_list, tmp_path / ADAPTER_FILE)
    target = tiny_unet(seed=2)
    shapes = {n: p.shape for n, p in target.named_parameters()}
    state = read_adapter(tmp_path, dict(target.config), shapes)
    target.load_state_dict(state, strict=False)
    for (name, expected), (_, got) in zip(source.named_parameters(), target.named_parameters(), strict=True):
        if "trajectory" in name:
            assert torch.equal(expected, got), name
    # The named safetensors file reads back the same and takes precedence over the pickle.
    save_converted(state, tmp_path)
    (tmp_path / ADAPTER_FILE).unlink()
    again = read_adapter(tmp_path, dict(target.config), shapes)
    assert all(torch.equal(again[k], v) for k, v in state.items())


def test_converter_rejects_wrong_count_and_shape():
    unet = tiny_unet()
    config = dict(unet.config)
    shapes = {n: p.shape for n, p in unet.named_parameters()}
    tensors = [p.detach() for n, p in unet.named_parameters() if "trajectory" in n]
    with pytest.raises(AdapterFormatError, match=r"holds 29 tensors but this UNet has 30"):
        convert_adapter(tensors[:-1], config, shapes)
    swapped = list(tensors)
    swapped[0], swapped[4] = tensors[4], tensors[0]  # to_out.0.bias where to_q.weight belongs
    with pytest.raises(AdapterFormatError, match=r"to_q.weight\) has shape"):
        convert_adapter(swapped, config, shapes)
    with pytest.raises(AdapterFormatError, match="list of tensors"):
        convert_adapter({"a": tensors[0]}, config, shapes)


def unet_inputs(batch, frames=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    sample = torch.randn(batch, frames, 8, 8, 12, generator=g)
    context = torch.randn(batch, 1, 32, generator=g)
    time_ids = torch.tensor([[6.0, 127.0, 0.02]] * batch)
    return sample, context, time_ids


def random_control(frames, size=(96, 64), count=300, seed=0):
    g = torch.Generator().manual_seed(seed)
    coords = torch.rand(frames, count, 2, generator=g) * torch.tensor(size, dtype=torch.float32)
    valid = torch.rand(frames, count, generator=g) > 0.2
    return TrajectoryControl(coords, valid, size, torch.Generator().manual_seed(seed))


def test_zeroed_branch_output_is_bit_exact_stock_svd():
    torch.manual_seed(0)
    stock = UNetSpatioTemporalConditionModel(**CONFIG).eval()
    unet = tiny_unet()
    missing, unexpected = unet.load_state_dict(stock.state_dict(), strict=False)
    assert not unexpected and all("attn_trajectory" in k for k in missing)
    sample, context, time_ids = unet_inputs(batch=2)
    with torch.no_grad():
        reference = stock(sample, 10.0, context, time_ids).sample
        with unet.trajectory_control(random_control(2)):
            live = unet(sample, 10.0, context, time_ids).sample
        for name in unet.branch_names():
            out = unet.get_submodule(name).to_out[0]
            out.weight.zero_()
            out.bias.zero_()
        with unet.trajectory_control(random_control(2)):
            zeroed = unet(sample, 10.0, context, time_ids).sample
        off = unet(sample, 10.0, context, time_ids).sample
    assert torch.equal(zeroed, reference) and torch.equal(off, reference)
    assert (live - reference).abs().max() > 1e-3  # a live branch does change the output


def test_authors_parity_only_matters_with_a_batch_of_two():
    unet = tiny_unet()
    with torch.no_grad():
        outs = {}
        for batch in (1, 2):
            sample, context, time_ids = unet_inputs(batch)
            for parity in (False, True):
                with unet.trajectory_control(random_control(2), authors_parity=parity):
                    outs[batch, parity] = unet(sample, 10.0, context, time_ids).sample
    assert torch.equal(outs[1, False], outs[1, True])
    assert (outs[2, False] - outs[2, True]).abs().max() > 1e-4


def reference_attention(attn, sequences):
    """Plain multi-head softmax attention with ``attn``'s projections (no SDPA), (S, L, C) → (S, L, C)."""
    q, k, v = attn.to_q(sequences), attn.to_k(sequences), attn.to_v(sequences)
    s, length, inner = q.shape
    split = [t.view(s, length, attn.heads, inner // attn.heads).transpose(1, 2) for t in (q, k, v)]
    weights = torch.softmax(split[0] @ split[1].transpose(-1, -2) / math.sqrt(inner // attn.heads), dim=-1)
    out = (weights @ split[2]).transpose(1, 2).reshape(s, length, inner)
    return attn.to_out[0](out)


def test_scatter_back_every_pixel_hit_once_and_unhit_pixels_zero():
    torch.manual_seed(0)
    height, width, frames, channels = 4, 6, 3, 8
    positions = height * width
    attn = Attention(query_dim=channels, heads=2, dim_head=4, processor=TrajectoryAttnProcessor()).eval()
    hidden = torch.randn(positions, frames, channels)  # batch 1: rows are (y, x)
    # Tracks 0..HW-1 visit every pixel exactly once per frame (a different permutation per frame); tracks HW..2HW-1
    # are invalid everywhere. Coordinates sit at the feature cells' centres of a 10×-larger trajectory frame.
    perms = torch.stack([torch.randperm(positions) for _ in range(frames)])
    cells = torch.cat([perms, torch.zeros(frames, positions, dtype=torch.long)], dim=1)  # (F, 2HW)
    coords = torch.stack([(cells % width) * 10.0 + 5.0, (cells // width) * 10.0 + 5.0], dim=-1)
    valid = torch.cat([torch.ones(frames, positions, dtype=torch.bool), torch.zeros(frames, positions, dtype=torch.bool)], 1)
    valid[1, 5] = False  # so the pixel track 5 visits at frame 1 is hit by nobody
    control = TrajectoryControl(coords, valid, (width * 10, height * 10), torch.Generator().manual_seed(7))

    with torch.no_grad():
        out = attn(hidden, height=height, width=width, control=control)
        # Independent computation: the same draw, features gathered by hand, sequences = consecutive pairs.
        pick = torch.randperm(2 * positions, generator=torch.Generator().manual_seed(7))
        tracks = [[(int(cells[f, m]), bool(valid[f, m])) for f in range(frames)] for m in pick.tolist()]
        gathered = torch.stack([torch.stack([hidden[p, f] * float(ok) for f, (p, ok) in enumerate(tr)])
                                for tr in tracks])  # (2HW, F, C)
        attended = reference_attention(attn, gathered.view(positions, 2 * frames, channels)).view(2 * positions,
                                                                                                    frames, channels)
        expected = torch.zeros(positions, frames, channels)
        for m, track in enumerate(tracks):
            for f, (p, ok) in enumerate(track):
                if ok:
                    expected[p, f] = attended[m, f]
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-6)
    lonely = int(cells[1, 5])
    assert torch.equal(out[lonely, 1], torch.zeros(channels))
    assert (out.abs().sum(-1) > 0).sum() == positions * frames - 1


def test_too_few_trajectories_is_a_clear_error():
    unet = tiny_unet()
    sample, context, time_ids = unet_inputs(batch=1)
    with torch.no_grad(), unet.trajectory_control(random_control(2, count=100)):
        with pytest.raises(ValueError, match="needs at least 192 trajectories"):
            unet(sample, 10.0, context, time_ids)
