"""Shared fixtures: real shot bundles exported by real bpy, built in a subprocess and cached.

``shot_bundle`` (720×480, 49 frames) and ``small_shot_bundle`` (160×96, 13 frames) are the standard scene of
``tests/support/scenes.py`` exported with renders on. They are cached under ``.cache/test-bundles/<hash>/``, the
hash covering the exporter, the bundle writer and the scene builder, so they are rebuilt only when the exporter or the scene
changes. bpy is never imported into the test process here.
"""

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # the add-on package `addon` for tests that run bpy

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


@pytest.fixture(scope="session")
def shot_bundle():
    """The standard shot: 3 moving entities, a dollying camera, 49 frames at 720×480, renders on."""
    return build_bundle("standard", "--scene", "standard")


@pytest.fixture(scope="session")
def small_shot_bundle():
    """The standard shot at 160×96 and 13 frames, renders on: for fast service tests."""
    return build_bundle("standard-160x96x13", "--scene", "standard", "--width", "160", "--height", "96",
                        "--frames", "13")
