"""PoseTraj's models on diffusers 0.42 (specs/pipelines.md §3.1), with the authors' parameter names.

* :class:`UNetSpatioTemporalConditionControlNetModel` — SVD's UNet whose forward adds ControlNet residuals to the
  skip connections and the mid block (same parameters as stock, so SVD's ``unet/`` folder loads unchanged).
* :class:`ControlNetSDVModel` — the Traj-ControlNet: a trainable copy of the SVD encoder (``conv_in``, time and
  added-time embeddings, ``down_blocks``, ``mid_block``) + ``controlnet_cond_embedding`` + zero-initialised 1×1 convs
  ``controlnet_down_blocks`` / ``controlnet_mid_block``. With ``camera_dim = 12`` it is the camera variant: the
  embedding gains ``cc_projection = Linear(256 + 12, 256)`` over the 1/8-resolution features (identity-initialised).

Shapes: ``sample`` (B, F, C, h, w) latents; ``controlnet_cond`` (B, F, 3, 8h, 8w) trajectory maps in [−1, 1];
``camera`` (B, F, 12) per-frame vectors; ``added_time_ids`` (B, 3) = (fps, motion bucket, noise aug).

The temporal cross-attention context uses diffusers' (≥ 0.28) order, not the authors' pre-0.28 mixing (§9): no
PoseTraj weights were released, so there are no published samples to reproduce, and every checkpoint this package
trains is sampled with the order it was trained with.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from diffusers import UNetSpatioTemporalConditionModel
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.embeddings import TimestepEmbedding, Timesteps
from diffusers.models.modeling_utils import ModelMixin
from diffusers.models.unets.unet_3d_blocks import UNetMidBlockSpatioTemporal, get_down_block
from diffusers.models.unets.unet_spatio_temporal_condition import UNetSpatioTemporalConditionOutput
from diffusers.utils import BaseOutput
from torch import nn

CAMERA_DIM = 12


@dataclass
class ControlNetSDVOutput(BaseOutput):
    """Residuals: one per UNet skip connection, and the mid-block one."""

    down_block_res_samples: tuple[torch.Tensor, ...]
    mid_block_res_sample: torch.Tensor


def _zero(module: nn.Module) -> nn.Module:
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


def _embed(model, sample: torch.Tensor, timestep, added_time_ids: torch.Tensor) -> torch.Tensor:
    """Time + added-time embedding of ``model`` (UNet or ControlNet), (B·F, D), as diffusers' SVD UNet does."""
    batch_size, num_frames = sample.shape[:2]
    timesteps = timestep if torch.is_tensor(timestep) else torch.tensor([timestep], device=sample.device)
    timesteps = timesteps.reshape(-1).to(sample.device).expand(batch_size)
    emb = model.time_embedding(model.time_proj(timesteps).to(dtype=sample.dtype))
    time_embeds = model.add_time_proj(added_time_ids.flatten()).reshape((batch_size, -1)).to(emb.dtype)
    emb = emb + model.add_embedding(time_embeds)
    return emb.repeat_interleave(num_frames, dim=0)


def _encode(model, sample: torch.Tensor, emb: torch.Tensor, encoder_hidden_states: torch.Tensor,
            indicator: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    """Down blocks + mid block; returns (mid output, skip features incl. the ``conv_in`` output)."""
    skips = (sample,)
    for block in model.down_blocks:
        if getattr(block, "has_cross_attention", False):
            sample, res = block(hidden_states=sample, temb=emb, encoder_hidden_states=encoder_hidden_states,
                                image_only_indicator=indicator)
        else:
            sample, res = block(hidden_states=sample, temb=emb, image_only_indicator=indicator)
        skips += res
    sample = model.mid_block(hidden_states=sample, temb=emb, encoder_hidden_states=encoder_hidden_states,
                             image_only_indicator=indicator)
    return sample, skips


class UNetSpatioTemporalConditionControlNetModel(UNetSpatioTemporalConditionModel):
    """SVD UNet accepting ``down_block_additional_residuals`` (one per skip) and ``mid_block_additional_residual``.

    Without residuals it computes exactly what the stock UNet computes. ``controlled`` lets an unmodified
    ``StableVideoDiffusionPipeline`` loop drive a ControlNet: inside it, every forward first runs the ControlNet on the
    same inputs and adds its residuals.
    """

    _control: tuple | None = None

    def controlled(self, controlnet: ControlNetSDVModel, cond: torch.Tensor, camera: torch.Tensor | None,
                   scale: float) -> _Controlled:
        """Context: forwards inside it use ``controlnet`` on ``cond`` (B, F, 3, H, W) / ``camera`` (B, F, 12).

        B is the UNet's batch (2 with CFG): both CFG halves see the maps, as in the authors' pipeline."""
        return _Controlled(self, (controlnet, cond, camera, scale))

    def forward(self, sample: torch.Tensor, timestep, encoder_hidden_states: torch.Tensor,
                added_time_ids: torch.Tensor, down_block_additional_residuals: tuple[torch.Tensor, ...] | None = None,
                mid_block_additional_residual: torch.Tensor | None = None, return_dict: bool = True):
        """sample (B, F, C, h, w) → (B, F, out, h, w). Residuals: (B·F, C_i, h_i, w_i) each."""
        if down_block_additional_residuals is None and self._control is not None:
            controlnet, cond, camera, scale = self._control
            down_block_additional_residuals, mid_block_additional_residual = controlnet(
                sample, timestep, encoder_hidden_states, added_time_ids, cond, camera=camera,
                conditioning_scale=scale, return_dict=False)
        forward_upsample_size = any(s % 2**self.num_upsamplers != 0 for s in sample.shape[-2:])
        batch_size, num_frames = sample.shape[:2]
        emb = _embed(self, sample, timestep, added_time_ids)
        encoder_hidden_states = encoder_hidden_states.repeat_interleave(num_frames, dim=0)
        sample = self.conv_in(sample.flatten(0, 1))
        indicator = torch.zeros(batch_size, num_frames, dtype=sample.dtype, device=sample.device)
        sample, skips = _encode(self, sample, emb, encoder_hidden_states, indicator)
        if down_block_additional_residuals is not None:
            if len(down_block_additional_residuals) != len(skips):
                raise ValueError(f"down_block_additional_residuals: {len(down_block_additional_residuals)} tensors, "
                                 f"the UNet has {len(skips)} skip connections")
            skips = tuple(s + r for s, r in zip(skips, down_block_additional_residuals, strict=True))
        if mid_block_additional_residual is not None:
            sample = sample + mid_block_additional_residual

        upsample_size = None
        for i, block in enumerate(self.up_blocks):
            res, skips = skips[-len(block.resnets):], skips[:-len(block.resnets)]
            if i < len(self.up_blocks) - 1 and forward_upsample_size:
                upsample_size = skips[-1].shape[2:]
            kwargs = dict(hidden_states=sample, temb=emb, res_hidden_states_tuple=res, upsample_size=upsample_size,
                          image_only_indicator=indicator)
            if getattr(block, "has_cross_attention", False):
                kwargs["encoder_hidden_states"] = encoder_hidden_states
            sample = block(**kwargs)

        sample = self.conv_out(self.conv_act(self.conv_norm_out(sample)))
        sample = sample.reshape(batch_size, num_frames, *sample.shape[1:])
        return UNetSpatioTemporalConditionOutput(sample=sample) if return_dict else (sample,)


class _Controlled:
    def __init__(self, unet: UNetSpatioTemporalConditionControlNetModel, control: tuple):
        self.unet, self.control = unet, control

    def __enter__(self) -> None:
        self.previous, self.unet._control = self.unet._control, self.control

    def __exit__(self, *exc) -> None:
        self.unet._control = self.previous


class ControlNetConditioningEmbeddingSVD(nn.Module):
    """Trajectory maps → features added to the ControlNet's ``conv_in`` output (÷8 spatially).

    ``conv_in`` 3×3 (3→c0) SiLU; per channel pair a 3×3 conv SiLU and a stride-2 3×3 conv SiLU (``blocks``); with a
    camera, ``cc_projection`` mixes the per-frame camera vector into every pixel; zero-initialised ``conv_out``.
    """

    def __init__(self, conditioning_embedding_channels: int, conditioning_channels: int = 3,
                 block_out_channels: tuple[int, ...] = (16, 32, 96, 256), camera_dim: int = 0):
        super().__init__()
        self.conv_in = nn.Conv2d(conditioning_channels, block_out_channels[0], kernel_size=3, padding=1)
        self.blocks = nn.ModuleList([])
        for c_in, c_out in zip(block_out_channels[:-1], block_out_channels[1:], strict=True):
            self.blocks.append(nn.Conv2d(c_in, c_in, kernel_size=3, padding=1))
            self.blocks.append(nn.Conv2d(c_in, c_out, kernel_size=3, padding=1, stride=2))
        if camera_dim:
            width = block_out_channels[-1]
            self.cc_projection = nn.Linear(width + camera_dim, width)
            with torch.no_grad():  # identity over the features: a camera-free start equals the plain ControlNet
                self.cc_projection.weight[:, :width].copy_(torch.eye(width))
                self.cc_projection.bias.zero_()
        self.conv_out = _zero(nn.Conv2d(block_out_channels[-1], conditioning_embedding_channels, kernel_size=3,
                                        padding=1))

    def forward(self, conditioning: torch.Tensor, camera: torch.Tensor | None = None) -> torch.Tensor:
        """conditioning (B·F, 3, H, W); camera (B·F, camera_dim) or None (zeros) → (B·F, C, H/8, W/8)."""
        x = nn.functional.silu(self.conv_in(conditioning))
        for block in self.blocks:
            x = nn.functional.silu(block(x))
        if hasattr(self, "cc_projection"):
            if camera is None:
                camera = x.new_zeros(x.shape[0], self.cc_projection.in_features - x.shape[1])
            pixels = x.permute(0, 2, 3, 1)
            camera = camera.to(x.dtype)[:, None, None, :].expand(*pixels.shape[:3], camera.shape[-1])
            x = self.cc_projection(torch.cat([pixels, camera], dim=-1)).permute(0, 3, 1, 2)
        return self.conv_out(x)


class ControlNetSDVModel(ModelMixin, ConfigMixin):
    """The Traj-ControlNet (module docstring). Config mirrors the SVD UNet's plus the conditioning settings."""

    _supports_gradient_checkpointing = True

    @register_to_config
    def __init__(
        self,
        sample_size: int | None = None,
        in_channels: int = 8,
        down_block_types: tuple[str, ...] = ("CrossAttnDownBlockSpatioTemporal", "CrossAttnDownBlockSpatioTemporal",
                                             "CrossAttnDownBlockSpatioTemporal", "DownBlockSpatioTemporal"),
        block_out_channels: tuple[int, ...] = (320, 640, 1280, 1280),
        addition_time_embed_dim: int = 256,
        projection_class_embeddings_input_dim: int = 768,
        layers_per_block: int | tuple[int, ...] = 2,
        cross_attention_dim: int | tuple[int, ...] = 1024,
        transformer_layers_per_block: int | tuple[int, ...] = 1,
        num_attention_heads: int | tuple[int, ...] = (5, 10, 20, 20),
        num_frames: int = 25,
        conditioning_channels: int = 3,
        conditioning_embedding_out_channels: tuple[int, ...] = (16, 32, 96, 256),
        camera_dim: int = 0,
    ):
        super().__init__()
        levels = len(down_block_types)
        per_level = (lambda v: (v,) * levels if isinstance(v, int) else tuple(v))  # noqa: E731
        heads, cross, layers, t_layers = map(per_level, (num_attention_heads, cross_attention_dim, layers_per_block,
                                                         transformer_layers_per_block))
        time_embed_dim = block_out_channels[0] * 4
        self.conv_in = nn.Conv2d(in_channels, block_out_channels[0], kernel_size=3, padding=1)
        self.time_proj = Timesteps(block_out_channels[0], True, downscale_freq_shift=0)
        self.time_embedding = TimestepEmbedding(block_out_channels[0], time_embed_dim)
        self.add_time_proj = Timesteps(addition_time_embed_dim, True, downscale_freq_shift=0)
        self.add_embedding = TimestepEmbedding(projection_class_embeddings_input_dim, time_embed_dim)
        self.controlnet_cond_embedding = ControlNetConditioningEmbeddingSVD(
            block_out_channels[0], conditioning_channels, tuple(conditioning_embedding_out_channels), camera_dim)

        self.down_blocks = nn.ModuleList([])
        self.controlnet_down_blocks = nn.ModuleList([_zero(nn.Conv2d(block_out_channels[0], block_out_channels[0], 1))])
        output_channel = block_out_channels[0]
        for i, block_type in enumerate(down_block_types):
            input_channel, output_channel = output_channel, block_out_channels[i]
            final = i == levels - 1
            self.down_blocks.append(get_down_block(
                block_type, num_layers=layers[i], transformer_layers_per_block=t_layers[i], in_channels=input_channel,
                out_channels=output_channel, temb_channels=time_embed_dim, add_downsample=not final, resnet_eps=1e-5,
                cross_attention_dim=cross[i], num_attention_heads=heads[i], resnet_act_fn="silu"))
            for _ in range(layers[i] + (0 if final else 1)):  # one per resnet, one for the downsampler
                self.controlnet_down_blocks.append(_zero(nn.Conv2d(output_channel, output_channel, 1)))
        self.mid_block = UNetMidBlockSpatioTemporal(
            block_out_channels[-1], temb_channels=time_embed_dim, transformer_layers_per_block=t_layers[-1],
            cross_attention_dim=cross[-1], num_attention_heads=heads[-1])
        self.controlnet_mid_block = _zero(nn.Conv2d(block_out_channels[-1], block_out_channels[-1], 1))

    @classmethod
    def from_unet(cls, unet: UNetSpatioTemporalConditionModel, *, camera_dim: int = 0,
                  conditioning_embedding_out_channels: tuple[int, ...] = (16, 32, 96, 256),
                  load_weights_from_unet: bool = True) -> ControlNetSDVModel:
        """A ControlNet shaped like ``unet``'s encoder, its weights copied (the authors' initialisation)."""
        config = {k: unet.config[k] for k in (
            "sample_size", "in_channels", "down_block_types", "block_out_channels", "addition_time_embed_dim",
            "projection_class_embeddings_input_dim", "layers_per_block", "cross_attention_dim",
            "transformer_layers_per_block", "num_attention_heads", "num_frames")}
        controlnet = cls(**config, camera_dim=camera_dim,
                         conditioning_embedding_out_channels=conditioning_embedding_out_channels)
        if load_weights_from_unet:
            for name in ("conv_in", "time_proj", "time_embedding", "add_time_proj", "add_embedding", "down_blocks",
                         "mid_block"):
                getattr(controlnet, name).load_state_dict(getattr(unet, name).state_dict())
        return controlnet if unet.dtype == controlnet.dtype else controlnet.to(unet.dtype)

    def forward(self, sample: torch.Tensor, timestep, encoder_hidden_states: torch.Tensor,
                added_time_ids: torch.Tensor, controlnet_cond: torch.Tensor, *, camera: torch.Tensor | None = None,
                conditioning_scale: float = 1.0, return_dict: bool = True):
        """Residuals for the UNet: (down residuals, each (B·F, C_i, h_i, w_i); mid residual), × ``conditioning_scale``.

        sample (B, F, C, h, w); controlnet_cond (B, F, 3, 8h, 8w) in [−1, 1]; camera (B, F, camera_dim) or None.
        Raises ValueError when a camera is given to a ControlNet without ``cc_projection``."""
        if camera is not None and not self.config.camera_dim:
            raise ValueError("camera: this ControlNet has no cc_projection (camera_dim 0); pass camera=None")
        batch_size, num_frames = sample.shape[:2]
        emb = _embed(self, sample, timestep, added_time_ids)
        encoder_hidden_states = encoder_hidden_states.repeat_interleave(num_frames, dim=0)
        sample = self.conv_in(sample.flatten(0, 1))
        flat_camera = None if camera is None else camera.flatten(0, 1)
        sample = sample + self.controlnet_cond_embedding(controlnet_cond.flatten(0, 1).to(sample.dtype), flat_camera)
        indicator = torch.zeros(batch_size, num_frames, dtype=sample.dtype, device=sample.device)
        sample, skips = _encode(self, sample, emb, encoder_hidden_states, indicator)
        down = tuple(conv(s) * conditioning_scale for conv, s in zip(self.controlnet_down_blocks, skips, strict=True))
        mid = self.controlnet_mid_block(sample) * conditioning_scale
        return ControlNetSDVOutput(down, mid) if return_dict else (down, mid)
