"""TrajPlate's user interface: the sidebar panels and the status-bar progress."""

from . import panels


def register():
    panels.register()


def unregister():
    panels.unregister()
