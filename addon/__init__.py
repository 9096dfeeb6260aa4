"""Blender side of TrajPlate: bpy lives here and nowhere else.

Each module listed in ``_MODULES`` exposes ``register()`` and ``unregister()``;
they are registered in order and unregistered in reverse, so a later module may
rely on classes of an earlier one (e.g. panels on property groups).
"""

import importlib

_MODULES = (
    "export.operator",
    "prefs",
    "properties",
    "operators",
    "ui",
)


def _modules():
    return [importlib.import_module(f".{name}", __name__) for name in _MODULES]


def register():
    done = []
    try:
        for module in _modules():
            module.register()
            done.append(module)
    except Exception:
        # A half-registered add-on hangs bpy at exit; undo what succeeded.
        for module in reversed(done):
            module.unregister()
        raise


def unregister():
    for module in reversed(_modules()):
        module.unregister()
