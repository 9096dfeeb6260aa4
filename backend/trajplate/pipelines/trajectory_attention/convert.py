"""The authors' adapter file → a named state dict (specs/pipelines.md §2.5).

``trajattn_temp.pth`` is not a state dict: it is a pickled list of 80 tensors that the authors' ``load_pipeline``
copies, in order, into the UNet parameters whose names contain "trajectory". That order is the module registration
order of the UNet — ``down_blocks`` → ``up_blocks`` → ``mid_block`` (the UNet registers the still-empty
``up_blocks`` list before it builds ``mid_block``) — and, inside each branch, ``to_q.weight, to_k.weight,
to_v.weight, to_out.0.weight, to_out.0.bias``. :func:`branch_parameter_names` writes that order down from the UNet
config alone, so the converter does not depend on how a model happens to register its modules.

The adapter is a pickle: it is read with ``torch.load(weights_only=True)``, which refuses anything but tensors and
plain containers.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

ADAPTER_FILE = "trajattn_temp.pth"
CONVERTED_FILE = "trajattn.safetensors"
BRANCH_TENSORS = ("to_q.weight", "to_k.weight", "to_v.weight", "to_out.0.weight", "to_out.0.bias")


class AdapterFormatError(ValueError):
    """The adapter file does not match the UNet: wrong type, tensor count or shape; the message says which."""


def _per_block(value, count: int) -> list:
    return list(value) if isinstance(value, list | tuple) else [value] * count


def branch_parameter_names(unet_config: dict) -> list[str]:
    """Names of the branch parameters in the authors' list order, for a ``UNetSpatioTemporalConditionModel`` config.

    Cross-attention down blocks have ``layers_per_block`` transformers, cross-attention up blocks one more, the mid
    block one; each transformer has ``transformer_layers_per_block`` temporal blocks (1 in SVD).
    """
    downs, ups = unet_config["down_block_types"], unet_config["up_block_types"]
    layers = _per_block(unet_config["layers_per_block"], len(downs))
    depth = _per_block(unet_config.get("transformer_layers_per_block", 1), len(downs))
    if not all(isinstance(d, int) for d in depth):
        raise AdapterFormatError("transformer_layers_per_block: per-layer depths are not supported (SVD uses 1)")
    modules = []
    for i, kind in enumerate(downs):
        if kind.startswith("CrossAttn"):
            modules += [(f"down_blocks.{i}.attentions.{j}", depth[i]) for j in range(layers[i])]
    up_layers, up_depth = list(reversed(layers)), list(reversed(depth))
    for i, kind in enumerate(ups):
        if kind.startswith("CrossAttn"):
            modules += [(f"up_blocks.{i}.attentions.{j}", up_depth[i]) for j in range(up_layers[i] + 1)]
    modules.append(("mid_block.attentions.0", depth[-1]))
    return [
        f"{module}.temporal_transformer_blocks.{k}.attn_trajectory.{tensor}"
        for module, count in modules for k in range(count)
        for tensor in BRANCH_TENSORS
    ]


def convert_adapter(tensors: list[torch.Tensor], unet_config: dict,
                    shapes: dict[str, torch.Size] | None = None) -> dict[str, torch.Tensor]:
    """The authors' tensor list → ``{parameter name: tensor}`` in their order.

    ``shapes`` (name → expected shape, e.g. from the UNet's state dict) turns a shape mismatch into an error naming
    the parameter. Raises :class:`AdapterFormatError` on a non-list, a non-tensor entry, a count or a shape mismatch.
    """
    names = branch_parameter_names(unet_config)
    if not isinstance(tensors, list | tuple) or not all(isinstance(t, torch.Tensor) for t in tensors):
        raise AdapterFormatError(f"{ADAPTER_FILE}: expected a list of tensors (the authors' format), got "
                                 f"{type(tensors).__name__}")
    if len(tensors) != len(names):
        raise AdapterFormatError(f"{ADAPTER_FILE}: holds {len(tensors)} tensors but this UNet has {len(names)} "
                                 f"attn_trajectory parameters ({len(names) // len(BRANCH_TENSORS)} branches × "
                                 f"{len(BRANCH_TENSORS)}); the adapter belongs to a different base model")
    state = dict(zip(names, tensors, strict=True))
    for name, tensor in state.items():
        if shapes is not None and tuple(tensor.shape) != tuple(shapes[name]):
            raise AdapterFormatError(f"{ADAPTER_FILE}: tensor {names.index(name)} ({name}) has shape "
                                     f"{tuple(tensor.shape)}; the UNet expects {tuple(shapes[name])}")
    return state


def read_adapter(adapter_dir: Path, unet_config: dict,
                 shapes: dict[str, torch.Size] | None = None) -> dict[str, torch.Tensor]:
    """The branch state dict from ``adapter_dir``: ``trajattn.safetensors`` if converted, else ``trajattn_temp.pth``.

    Raises :class:`AdapterFormatError` (see :func:`convert_adapter`; a converted file must hold exactly the branch
    names) and FileNotFoundError naming both files when neither exists.
    """
    adapter_dir = Path(adapter_dir)
    converted = adapter_dir / CONVERTED_FILE
    if converted.is_file():
        state = load_file(converted)
        expected = branch_parameter_names(unet_config)
        if sorted(state) != sorted(expected):
            missing, extra = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
            raise AdapterFormatError(f"{CONVERTED_FILE}: missing keys {missing[:3]}, unexpected keys {extra[:3]}")
        return convert_adapter([state[name] for name in expected], unet_config, shapes)
    original = adapter_dir / ADAPTER_FILE
    if not original.is_file():
        raise FileNotFoundError(f"no {ADAPTER_FILE} or {CONVERTED_FILE} in {adapter_dir}; download the adapter with "
                                "`trajplate download trajectory-attention`")
    try:
        tensors = torch.load(original, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises UnpicklingError/RuntimeError variants for a foreign pickle
        raise AdapterFormatError(f"{ADAPTER_FILE}: not a plain list of tensors ({exc})") from exc
    return convert_adapter(tensors, unet_config, shapes)


def save_converted(state: dict[str, torch.Tensor], adapter_dir: Path) -> Path:
    """Write the named state dict as ``trajattn.safetensors`` next to the original; returns its path."""
    path = Path(adapter_dir) / CONVERTED_FILE
    save_file({k: v.contiguous() for k, v in state.items()}, path)
    return path
