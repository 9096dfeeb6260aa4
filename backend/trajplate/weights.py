"""Preset → weight folders: the Hugging Face cache for real weights, ``<home>/tiny`` for tiny random ones.

Real weights are fetched once with ``trajplate download <pipeline>`` (``huggingface_hub.snapshot_download`` with the
preset's pinned revision and allow patterns) into the standard HF cache (``$HF_HOME/hub``); serving only ever resolves
them offline (``local_files_only=True``), so a server never touches the network. Adapters without a public repository
(``local_only``, e.g. a locally trained PoseTraj ControlNet) live in ``<home>/weights/<pipeline>/<role>``.
Where the real weights are absent, tiny randomly initialised weights of the same classes and layouts stand in
(:mod:`trajplate.tiny`) and the result says so (``ResolvedWeights.tiny``).

Errors: :class:`WeightsError`, whose message names the repository and the command that fixes it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from huggingface_hub import snapshot_download
from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, OfflineModeIsEnabled

from .presets import Preset, WeightsRef


class WeightsError(RuntimeError):
    """Weights are missing or cannot be downloaded; the message names the repo and the fix."""


def trajplate_home() -> Path:
    """``$TRAJPLATE_HOME`` or ``~/.cache/trajplate``: tiny weights, local-only weights, the default data dir."""
    env = os.environ.get("TRAJPLATE_HOME")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "trajplate"


def local_weights_dir(pipeline_id: str, role: str) -> Path:
    """Where a ``local_only`` weight folder of ``pipeline_id`` (role ``base``, ``adapter`` or an extra) is expected."""
    return trajplate_home() / "weights" / pipeline_id / role


@dataclass(frozen=True)
class ResolvedWeights:
    """Folders to load from. ``revisions`` maps role → ``repo_id@commit`` (or ``tiny``/``local:<path>``)."""

    base_dir: Path
    adapter_dir: Path
    tiny: bool
    revisions: dict[str, str]
    extra_dirs: dict[str, Path] = field(default_factory=dict)


def _refs(preset: Preset) -> dict[str, WeightsRef]:
    return {"base": preset.base, "adapter": preset.adapter, **preset.extra_weights}


def cached_dir(preset: Preset, role: str) -> tuple[Path, str] | None:
    """(folder, revision label) of one weight role when it is on this machine, else None. Never uses the network."""
    ref = _refs(preset)[role]
    if ref.local_only:
        folder = local_weights_dir(preset.id, role)
        return (folder, f"local:{folder}") if folder.is_dir() and any(folder.iterdir()) else None
    try:
        snapshot = Path(snapshot_download(
            ref.repo_id, revision=ref.revision, allow_patterns=ref.allow_patterns, local_files_only=True
        ))
    except LocalEntryNotFoundError:
        return None
    folder = snapshot / ref.subfolder if ref.subfolder else snapshot
    if not folder.is_dir() or not any(folder.iterdir()):
        return None
    return folder, f"{ref.repo_id}@{snapshot.name}"


def weights_status(preset: Preset) -> dict[str, dict[str, object]]:
    """Per role: repo id, pinned revision, whether it is cached locally. For ``GET /v1/pipelines`` and the CLI."""
    return {
        role: {"repo_id": ref.repo_id, "revision": ref.revision, "local_only": ref.local_only,
               "cached": cached_dir(preset, role) is not None}
        for role, ref in _refs(preset).items()
    }


def resolve_weights(preset: Preset, *, allow_tiny: bool = True) -> ResolvedWeights:
    """Folders of the preset's real weights from the local cache; tiny weights when any role is missing.

    Raises :class:`WeightsError` when real weights are missing and ``allow_tiny`` is False.
    """
    found = {role: cached_dir(preset, role) for role in _refs(preset)}
    missing = [role for role, hit in found.items() if hit is None]
    if not missing:
        return ResolvedWeights(
            base_dir=found["base"][0], adapter_dir=found["adapter"][0], tiny=False,
            revisions={role: hit[1] for role, hit in found.items()},
            extra_dirs={role: hit[0] for role, hit in found.items() if role not in ("base", "adapter")},
        )
    if not allow_tiny:
        raise WeightsError(_missing_message(preset, missing))
    from .tiny import ensure_tiny  # imports the pipeline package (torch) only when tiny weights are needed

    root = ensure_tiny(preset.id)
    return ResolvedWeights(base_dir=root / "base", adapter_dir=root / "adapter", tiny=True,
                           revisions={"base": "tiny", "adapter": "tiny"})


def _missing_message(preset: Preset, missing: list[str]) -> str:
    refs = _refs(preset)
    parts = []
    for role in missing:
        ref = refs[role]
        if ref.local_only:
            parts.append(f"{role} (no public repository {ref.repo_id}: put the folder at "
                         f"{local_weights_dir(preset.id, role)})")
        else:
            parts.append(f"{role} {ref.repo_id}@{ref.revision}")
    return (f"weights of pipeline {preset.id!r} are not in the local Hugging Face cache: {'; '.join(parts)}. "
            f"Fix: run `trajplate download {preset.id}` on a machine with network access (same HF_HOME), "
            "or use tiny weights for a test run.")


def download(preset: Preset) -> ResolvedWeights:
    """Fetch every public weight role of ``preset`` at its pinned revision into the HF cache; returns the folders.

    Raises :class:`WeightsError` when the Hub cannot be reached, a repo is gated/missing, or a ``local_only`` folder
    is absent (there is nothing to download for it).
    """
    for role, ref in _refs(preset).items():
        if ref.local_only:
            continue
        try:
            snapshot_download(ref.repo_id, revision=ref.revision, allow_patterns=ref.allow_patterns)
        except (LocalEntryNotFoundError, OfflineModeIsEnabled, OSError) as exc:
            raise WeightsError(
                f"cannot download {role} weights {ref.repo_id}@{ref.revision} of {preset.id!r}: the Hugging Face Hub "
                f"is not reachable from here ({type(exc).__name__}). Fix: run `trajplate download {preset.id}` where "
                "there is network access (HF_HUB_OFFLINE must be unset) and copy the HF cache ($HF_HOME/hub) over."
            ) from exc
        except HfHubHTTPError as exc:
            raise WeightsError(
                f"cannot download {role} weights {ref.repo_id}@{ref.revision} of {preset.id!r}: {exc}. Fix: accept the "
                "model's licence on huggingface.co and log in (`hf auth login`), or check the preset's repo id."
            ) from exc
    return resolve_weights(preset, allow_tiny=False)
