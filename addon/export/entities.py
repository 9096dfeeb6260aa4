"""Which objects are the shot's entities, and their per-entity settings (prompt, axes, colour).

Settings are custom properties on the objects (names in :mod:`.props`), so the UI edits them and the export reads
them; missing properties fall back to the defaults there.
"""

import colorsys
import zlib

import bpy

from . import props
from .errors import ExportError

# Object types that render as geometry; cameras, lights, empties, armatures, lattices, speakers and probes do not.
GEOMETRY_TYPES = frozenset({"MESH", "CURVE", "SURFACE", "META", "FONT", "CURVES", "POINTCLOUD", "VOLUME",
                            "GREASEPENCIL", "GPENCIL"})
NEVER_ENTITIES = frozenset({"CAMERA", "LIGHT", "LIGHT_PROBE", "SPEAKER"})


def _marked(obj):
    """True / False when the user marked / excluded the object, None when unset."""
    value = obj.get(props.MARKED_ENTITY)
    return None if value is None else bool(value)


def explicit_entities(scene):
    """Objects of the scene's ``TrajPlate`` collection plus user-marked objects, sorted by name, or None when the
    scene has no such collection (then the moving objects are found by :func:`.sampling.find_moving`)."""
    in_scene = set(scene.objects)
    marked = {obj for obj in in_scene if _marked(obj)}
    coll = bpy.data.collections.get(props.ENTITY_COLLECTION)
    if coll is None or not any(obj in in_scene for obj in coll.all_objects):
        return None
    chosen = {obj for obj in coll.all_objects if obj in in_scene} | marked
    return sorted((o for o in chosen if o.type not in NEVER_ENTITIES and _marked(o) is not False), key=lambda o: o.name)


def auto_candidates(scene):
    """Visible, renderable geometry objects (not excluded by the user): the candidates for moving entities."""
    return sorted(
        (o for o in scene.objects
         if o.type in GEOMETRY_TYPES and not o.hide_render and o.visible_get() and _marked(o) is not False),
        key=lambda o: o.name,
    )


def marked_entities(scene):
    return [o for o in scene.objects if _marked(o) and o.type not in NEVER_ENTITIES]


def stable_color(name):
    """[r, g, b] ints 0-255 derived from the object name: the same entity keeps its colour across exports."""
    hue = (zlib.crc32(name.encode("utf-8")) * 0.618033988749895) % 1.0
    return [round(c * 255) for c in colorsys.hsv_to_rgb(hue, 0.7, 0.95)]


def _axis(obj, key, default):
    value = obj.get(key, default)
    if value not in props.AXES:
        raise ExportError(
            f"Object '{obj.name}': custom property '{key}' is {value!r}; set it to one of {', '.join(props.AXES)}."
        )
    return value


def _color(obj):
    value = obj.get(props.COLOR)
    if value is None:
        return stable_color(obj.name)
    rgb = list(value)
    if len(rgb) != 3 or not all(isinstance(c, int | float) and 0 <= c <= 255 for c in rgb):
        raise ExportError(
            f"Object '{obj.name}': custom property '{props.COLOR}' is {rgb!r}; set it to three numbers 0-255."
        )
    return [int(round(c)) for c in rgb]


def entity_meta(obj, entity_id):
    """The shot.json entry of entity ``obj`` with id ``entity_id`` (1-based).

    Raises ExportError naming the object and property for an unknown axis, forward and up on one line, or a bad colour.
    """
    forward = _axis(obj, props.FORWARD_AXIS, props.DEFAULT_FORWARD_AXIS)
    up = _axis(obj, props.UP_AXIS, props.DEFAULT_UP_AXIS)
    if forward[-1] == up[-1]:
        raise ExportError(
            f"Object '{obj.name}': forward axis {forward} and up axis {up} lie on one line; "
            f"change '{props.FORWARD_AXIS}' or '{props.UP_AXIS}'."
        )
    return {
        "id": entity_id,
        "name": obj.name,
        "prompt": str(obj.get(props.PROMPT, "")),
        "forward_axis": forward,
        "up_axis": up,
        "color": _color(obj),
        "kind": obj.type,
    }
