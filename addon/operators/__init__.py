"""TrajPlate's operators (the export operator lives in ``export/operator.py``)."""

import bpy

from . import backend, generate, preview, session, shot, takes

CLASSES = (*generate.CLASSES, *backend.CLASSES, *takes.CLASSES, *shot.CLASSES, *preview.CLASSES)


def register():
    for cls in CLASSES:
        bpy.utils.register_class(cls)
    session.register()


def unregister():
    session.unregister()
    backend.unregister_runtime()
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
