"""The authors' MagicMotion checkpoints: safe reading, strict loading, one-time conversion to safetensors.

quanhaol/MagicMotion ships raw torch pickles (``stage1/mask.pt``, ``stage2/box.pt``, ``stage3/sparse_box.pt`` and
``*_perception_head.pt``) holding ``{"state_dict": {name: tensor}}``. The authors load them with
``weights_only=False`` and ``strict=False`` and only print the missing/unexpected counts; we read them with
``torch.load(weights_only=True, mmap=True)`` (tensors and plain containers only, no code runs; memory-mapped so a
10 GB file is not copied into RAM) and refuse any missing, unexpected or mis-shaped key, naming it.

If a file holds other Python objects, ``weights_only=True`` rejects it; then nothing is loaded and the error explains
the one-time conversion (``convert_checkpoint(..., trust_pickle=True)`` or ``python -m
trajplate.pipelines.magicmotion.checkpoint --trust-pickle <adapter_dir>``), which writes a ``.safetensors`` beside
each ``.pt``. Loading prefers that ``.safetensors`` (no pickle at all, and faster to map).

Errors: :class:`CheckpointError`, whose message names the file, the keys and the fix.
"""

from __future__ import annotations

import argparse
import pickle
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

AUTHORS_KEY = "state_dict"
MAX_LISTED = 8


class CheckpointError(RuntimeError):
    """A checkpoint is missing, unreadable or does not match the module; the message names the file, keys and fix."""


def converted_path(path: Path) -> Path:
    """Where :func:`convert_checkpoint` writes the safetensors copy of ``path``: the same name, ``.safetensors``."""
    return path.with_suffix(".safetensors")


def read_state_dict(path: Path, *, trust_pickle: bool = False) -> dict[str, torch.Tensor]:
    """Tensors of one checkpoint: ``<name>.safetensors`` if present (converted), else the authors' ``<name>.pt``.

    ``path`` names the ``.pt`` file. Only with ``trust_pickle`` is a pickle that holds non-tensor objects unpickled
    (arbitrary code can run): use it once, on files from the pinned repository, to convert them.
    Raises CheckpointError when neither file exists, the pickle is unsafe or has no ``state_dict`` of tensors.
    """
    safe = converted_path(path)
    if safe.is_file():
        return load_file(str(safe))
    if not path.is_file():
        raise CheckpointError(
            f"{path}: no such checkpoint (nor {safe.name}). Fix: run `trajplate download magicmotion`, or check the "
            "preset's variant files."
        )
    try:
        obj = _torch_load(path, weights_only=not trust_pickle)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"{path}: holds Python objects other than tensors, which weights_only loading refuses ({exc}). Nothing "
            "was loaded. Fix: if the file comes from the pinned quanhaol/MagicMotion revision, convert it once with "
            f"`python -m trajplate.pipelines.magicmotion.checkpoint --trust-pickle {path.parent.parent}`."
        ) from exc
    state = obj.get(AUTHORS_KEY) if isinstance(obj, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        found = sorted(obj)[:MAX_LISTED] if isinstance(obj, dict) else type(obj).__name__
        raise CheckpointError(
            f"{path}: expected the authors' layout {{'{AUTHORS_KEY}': {{name: tensor}}}}, found {found}. "
            "Fix: use the files of quanhaol/MagicMotion (stage*/<variant>.pt)."
        )
    return state


def _torch_load(path: Path, *, weights_only: bool) -> object:
    try:
        return torch.load(path, map_location="cpu", weights_only=weights_only, mmap=True)
    except RuntimeError as exc:  # legacy (pre-zipfile) pickles cannot be memory-mapped
        if "mmap" not in str(exc):
            raise
        return torch.load(path, map_location="cpu", weights_only=weights_only)


def _listing(keys: list[str]) -> str:
    more = f" … (+{len(keys) - MAX_LISTED} more)" if len(keys) > MAX_LISTED else ""
    return ", ".join(keys[:MAX_LISTED]) + more


def check_state_dict(module: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Raise CheckpointError unless ``state`` has exactly ``module``'s keys (params + persistent buffers) and shapes."""
    expected = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing key(s): {_listing(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected key(s): {_listing(unexpected)}")
    wrong = [f"{k} {tuple(state[k].shape)} != {expected[k]}" for k in sorted(set(expected) & set(state))
             if tuple(state[k].shape) != expected[k]]
    if wrong:
        problems.append(f"{len(wrong)} shape mismatch(es): {_listing(wrong)}")
    if problems:
        raise CheckpointError(
            f"{source} does not match {type(module).__name__} built from the base transformer's config: "
            f"{'; '.join(problems)}. Nothing was loaded. Fix: pair the checkpoint with the base model it was trained "
            "on (THUDM/CogVideoX-5b-I2V) and use the unmodified authors' file."
        )


def load_strict(module: nn.Module, state: dict[str, torch.Tensor], source: str, dtype: torch.dtype) -> None:
    """Check ``state`` against ``module`` (see :func:`check_state_dict`) and assign it, cast to ``dtype``.

    ``module`` may live on the meta device (built without allocating); its tensors are replaced, not copied into.
    """
    check_state_dict(module, state, source)
    module.load_state_dict({k: v.to(dtype) for k, v in state.items()}, strict=True, assign=True)


def convert_checkpoint(path: Path, *, trust_pickle: bool = False) -> Path:
    """Write ``path`` (an authors' ``.pt``) as ``.safetensors`` beside it; returns the new file.

    The tensors are written unchanged (keys are checked when the pipeline loads them); the safetensors header records
    the source file name. Raises CheckpointError as :func:`read_state_dict`.
    """
    state = read_state_dict(path, trust_pickle=trust_pickle)
    out = converted_path(path)
    tmp = out.with_suffix(".safetensors.tmp")
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp), metadata={"source": path.name, "format": "pt"})
    tmp.replace(out)
    return out


def main(argv: list[str] | None = None) -> None:
    """``python -m trajplate.pipelines.magicmotion.checkpoint [--trust-pickle] ADAPTER_DIR``: convert every .pt."""
    parser = argparse.ArgumentParser(description="Convert MagicMotion .pt checkpoints to safetensors, once.")
    parser.add_argument("adapter_dir", type=Path)
    parser.add_argument("--trust-pickle", action="store_true", help="unpickle files that hold non-tensor objects")
    args = parser.parse_args(argv)
    files = sorted(args.adapter_dir.rglob("*.pt"))
    if not files:
        raise SystemExit(f"{args.adapter_dir}: no .pt files to convert")
    for path in files:
        print(f"{path} -> {convert_checkpoint(path, trust_pickle=args.trust_pickle)}")


if __name__ == "__main__":
    main()
