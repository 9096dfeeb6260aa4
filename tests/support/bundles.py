"""Real shot bundles exported by real bpy in a subprocess, cached under ``.cache/test-bundles/<hash>/``."""

import hashlib
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Only what shapes a bundle: edits to the UI side of the add-on must not force a 90 s rebuild.
_SOURCES = ("addon/export", "addon/bundle.py", "addon/compat.py", "tests/support/scenes.py", "tests/support/make_bundle.py")


def _sources_hash():
    digest = hashlib.sha256()
    for source in _SOURCES:
        top = ROOT / source
        for path in sorted(top.rglob("*.py")) if top.is_dir() else [top]:
            digest.update(str(path.relative_to(ROOT)).encode())
            digest.update(path.read_bytes())
    digest.update((ROOT / "blender_manifest.toml").read_bytes())
    return digest.hexdigest()[:16]


def build_bundle(name, *args):
    """Path of the cached bundle ``name``.zip made by ``make_bundle.py *args``; built on first use."""
    out = ROOT / ".cache" / "test-bundles" / _sources_hash() / f"{name}.zip"
    if not out.exists():
        cmd = [sys.executable, str(ROOT / "tests" / "support" / "make_bundle.py"), "--out", str(out), *args]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
        if proc.returncode != 0 or not out.exists():
            raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
    return out
