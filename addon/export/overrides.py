"""Temporary changes to Blender settings that are always undone, even on error or cancel."""


def _value(value):
    if hasattr(value, "__len__") and not isinstance(value, str):
        return tuple(value)  # bpy arrays are live views; keep the values
    return value


class Overrides:
    """Record each property's old value before setting it; :meth:`restore` puts every one back.

    Use as a context manager. Restoring runs in reverse order, then once more in forward order for values that did
    not stick: some settings depend on others (an EXR colour depth of '32' is refused by PNG, and a file format is
    refused under another media type in 5.0), so the first pass can be refused or silently clamped.
    """

    def __init__(self):
        self._saved = []

    def keep(self, owner, *names):
        """Record properties that Blender may change as a side effect (e.g. colour depth when the format changes)."""
        for name in names:
            if not any(o == owner and n == name for o, n, _ in self._saved):
                self._saved.append((owner, name, _value(getattr(owner, name))))

    def set(self, owner, name, value):
        self.keep(owner, name)  # the first recorded value is the user's
        setattr(owner, name, value)

    def restore(self):
        for owner, name, old in reversed(self._saved):
            try:
                setattr(owner, name, old)
            except (TypeError, ValueError, AttributeError):
                pass  # retried below, once what it depends on is back
        for owner, name, old in self._saved:
            if _value(getattr(owner, name)) != old:
                setattr(owner, name, old)
        self._saved.clear()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.restore()
        return False
