"""The one place where Blender 4.2 / 4.5 / 5.0 API differences live.

Each helper names the versions it bridges; callers never test ``bpy.app.version`` themselves.
"""

# EEVEE's engine id is BLENDER_EEVEE_NEXT in 4.2-4.5 and BLENDER_EEVEE again from 5.0.
EEVEE_ENGINES = frozenset({"BLENDER_EEVEE", "BLENDER_EEVEE_NEXT"})

# Object-index pass: "IndexOB" in 4.x, "Object Index" in 5.0 (multi-part EXR); Depth kept its name.
OBJECT_INDEX_PASS_NAMES = ("IndexOB", "Object Index")
DEPTH_PASS_NAMES = ("Depth",)


def set_image_format(image_settings, file_format, set_attr):
    """Select ``file_format`` on ``image_settings`` through ``set_attr(owner, name, value)``.

    5.0 added ``media_type`` ('IMAGE', 'MULTI_LAYER_IMAGE', 'VIDEO'), which must be chosen before a format of that
    kind is accepted; 4.2 and 4.5 have no such property. ``set_attr`` lets the caller record the old values.
    """
    if hasattr(image_settings, "media_type"):
        media = "MULTI_LAYER_IMAGE" if file_format == "OPEN_EXR_MULTILAYER" else "IMAGE"
        set_attr(image_settings, "media_type", media)
    set_attr(image_settings, "file_format", file_format)

