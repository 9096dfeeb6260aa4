"""Errors of the shot export; the operator turns them into ``self.report({'ERROR'}, ...)``."""


class ExportError(Exception):
    """The scene cannot be exported as it is; the message names the object or setting and the fix."""


class ExportCancelled(ExportError):
    """The user cancelled the export; no bundle was written."""
