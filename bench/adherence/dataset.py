"""The adherence benchmark shots on disk, built on first use and cached (no bpy in this process).

Each shot is built and exported by ``scenes.py`` in a Blender subprocess; perturbed oracles are rendered the
same way. Everything lives under ``.cache/adherence/<hash>/``, the hash covering ``scenes.py``, the add-on's
exporter (``addon/export/``) and the manifest, so a change to either rebuilds the shots.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[2]
SCENES = Path(__file__).with_name("scenes.py")


def _hash() -> str:
    digest = hashlib.sha256()
    for path in [SCENES, ROOT / "blender_manifest.toml", *sorted((ROOT / "addon" / "export").rglob("*.py"))]:
        digest.update(str(path.relative_to(ROOT)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _run(*args: str) -> None:
    proc = subprocess.run([sys.executable, str(SCENES), *args], capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        raise RuntimeError(f"scenes.py {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")


def shot_bundle(name: str, width: int = 720, height: int = 480, frames: int = 49) -> Path:
    """Path of the bundle of shot ``name`` (see ``scenes.SHOTS``) with its oracle renders; built on first use."""
    out = ROOT / ".cache" / "adherence" / _hash() / f"{name}-{width}x{height}x{frames}.zip"
    if not out.exists():
        _run("build", name, str(out), "--width", str(width), "--height", str(height), "--frames", str(frames))
    return out


def perturbed_frames(bundle: Path, *, camera_yaw_deg: float = 0.0, entity_offset_m: float = 0.0) -> np.ndarray:
    """(F, H, W, 3) uint8 RGB: the shot of ``bundle`` rendered with the ramped perturbation (see ``scenes.py``)."""
    folder = bundle.with_name(f"{bundle.stem}-yaw{camera_yaw_deg:g}-offset{entity_offset_m:g}")
    done = folder / "done"
    if not done.exists():
        _run("render", str(bundle.with_suffix(".blend")), str(folder),
             "--camera-yaw", str(camera_yaw_deg), "--entity-offset", str(entity_offset_m))
        done.touch()
    paths = sorted(folder.glob("*.png"))
    return np.stack([cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in paths])
