"""blender_manifest.toml passes Blender's own validator, and the built extension zip holds the add-on and nothing else.

Both use the extension CLI that ships inside the bpy wheel (specs/blender.md §2.1), through scripts/build_extension.sh.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXCLUDED_PREFIXES = ("backend/", "tests/", "bench/", "docs/", "scripts/", ".venv", ".git/", ".ci/", ".cache/", "dist/")
EXCLUDED_NAMES = ("pyproject.toml", ".gitignore")


def _build(out: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHON": sys.executable}
    return subprocess.run(
        ["bash", str(ROOT / "scripts" / "build_extension.sh"), str(out)], env=env, capture_output=True, text=True
    )


def test_manifest_validates_and_the_zip_holds_only_the_add_on(tmp_path):
    result = _build(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert 'Success parsing TOML in "."' in result.stdout
    manifest = tomllib.loads((ROOT / "blender_manifest.toml").read_text())
    names = zipfile.ZipFile(tmp_path / f"{manifest['id']}-{manifest['version']}.zip").namelist()
    assert {"__init__.py", "blender_manifest.toml", "addon/__init__.py", "addon/bundle.py"} <= set(names)
    assert any(name.startswith("addon/export/") for name in names)
    leaked = [
        name
        for name in names
        if name.startswith(EXCLUDED_PREFIXES)
        or name in EXCLUDED_NAMES
        or "__pycache__/" in name
        or name.endswith(".pyc")
        or ".egg-info/" in name
    ]
    assert leaked == []


def test_validator_refuses_a_broken_manifest(tmp_path):
    """The check above can fail: the same validator rejects a tagline ending in '.' and an unknown permission."""
    text = (ROOT / "blender_manifest.toml").read_text()
    manifest = tomllib.loads(text)
    broken = text.replace(manifest["tagline"], manifest["tagline"] + ".").replace("\nfiles = ", "\nfilez = ")
    (tmp_path / "blender_manifest.toml").write_text(broken)
    result = subprocess.run([sys.executable, _blender_ext(), "validate", str(tmp_path)], capture_output=True, text=True)
    assert result.returncode != 0
    assert "tagline" in result.stdout + result.stderr and "filez" in result.stdout + result.stderr


def _blender_ext() -> str:
    origin = Path(importlib.util.find_spec("bpy").origin).parent
    return str(sorted(origin.glob("*/scripts/addons_core/bl_pkg/cli/blender_ext.py"))[-1])
