"""bpy fixtures for add-on tests: the add-on registered for the session, a fresh empty file per test."""

import pytest


@pytest.fixture(scope="session")
def registered_addon():
    """Register every class of the add-on once; always unregister (a class left registered hangs bpy 4.5 at exit)."""
    import bpy  # lazily, so backend-only runs never load Blender

    import addon

    bpy.ops.wm.read_homefile(use_empty=True)
    addon.register()
    yield addon
    addon.unregister()


@pytest.fixture
def empty_scene(registered_addon):
    """A fresh empty file (``read_homefile(use_empty=True)`` keeps preferences and the registered add-on)."""
    import bpy

    bpy.ops.wm.read_homefile(use_empty=True)
    return bpy.context.scene
