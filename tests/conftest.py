"""Shared fixtures: real shot bundles exported by real bpy, built in a subprocess and cached.

``shot_bundle`` (720×480, 49 frames) and ``small_shot_bundle`` (160×96, 13 frames) are the standard scene of
``tests/support/scenes.py`` exported with renders on. They are cached under ``.cache/test-bundles/<hash>/``, the
hash covering the exporter, the bundle writer and the scene builder, so they are rebuilt only when the exporter or the scene
changes. bpy is never imported into the test process here.
"""

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # the add-on package `addon` for tests that run bpy

from support.bundles import build_bundle  # noqa: E402  (needs tests/ on sys.path, which pytest provides)


@pytest.fixture(scope="session")
def shot_bundle():
    """The standard shot: 3 moving entities, a dollying camera, 49 frames at 720×480, renders on."""
    return build_bundle("standard", "--scene", "standard")


@pytest.fixture(scope="session")
def small_shot_bundle():
    """The standard shot at 160×96 and 13 frames, renders on: for fast service tests."""
    return build_bundle("standard-160x96x13", "--scene", "standard", "--width", "160", "--height", "96",
                        "--frames", "13")
