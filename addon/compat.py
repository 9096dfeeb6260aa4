"""The one place where Blender 4.2 / 4.5 / 5.0 API differences live.

Each helper names the versions it bridges; callers never test ``bpy.app.version`` themselves.
"""

import bpy

# EEVEE's engine id is BLENDER_EEVEE_NEXT in 4.2-4.5 and BLENDER_EEVEE again from 5.0.
EEVEE_ENGINES = frozenset({"BLENDER_EEVEE", "BLENDER_EEVEE_NEXT"})

# Object-index pass: "IndexOB" in 4.x, "Object Index" in 5.0 (multi-part EXR); Depth kept its name.
OBJECT_INDEX_PASS_NAMES = ("IndexOB", "Object Index")
DEPTH_PASS_NAMES = ("Depth",)


def set_image_format(image_settings, file_format, set_attr):
    """Select ``file_format`` on ``image_settings`` through ``set_attr(owner, name, value)``.

    5.0 added ``media_type`` ('IMAGE', 'MULTI_LAYER_IMAGE', 'VIDEO'), which must be chosen before a format of that
    kind is accepted; 4.2 and 4.5 have no such property. ``set_attr`` lets the caller record the old values.
    Setting ``media_type`` also switches ``file_format`` in 5.0, so the file format is recorded first (set to itself).
    """
    if hasattr(image_settings, "media_type"):
        set_attr(image_settings, "file_format", image_settings.file_format)
        media = "MULTI_LAYER_IMAGE" if file_format == "OPEN_EXR_MULTILAYER" else "IMAGE"
        set_attr(image_settings, "media_type", media)
    set_attr(image_settings, "file_format", file_format)



# -- Video Sequence Editor (strips vs sequences, sequencer scene) --------------------------------------------


def strips(editor):
    """Top-level strips of a ``SequenceEditor``: ``strips`` in 4.4+ (the only name in 5.0), ``sequences`` in 4.2."""
    return editor.strips if hasattr(editor, "strips") else editor.sequences


def strips_all(editor):
    """All strips, meta-strip contents included: ``strips_all`` in 4.4+, ``sequences_all`` in 4.2."""
    return editor.strips_all if hasattr(editor, "strips_all") else editor.sequences_all


def retiming_span(frames: int) -> int:
    """Content frames between the first and the last retiming key of a strip of ``frames`` frames: 5.0 puts the
    last key on the end of the last frame (``frames``), 4.2-4.5 on the last frame itself (``frames - 1``)."""
    return frames if bpy.app.version >= (5, 0, 0) else frames - 1


def retimed_movie_cache_fix(editor) -> str:
    """Keep a retimed movie strip showing the frames its retiming asks for; returns a note for the console ('' if
    nothing changed).

    5.0 keys its raw (source image) cache by the *truncated* frame index of a retimed strip but decodes the *rounded*
    one, so a slowed-down take shows, on every scene frame whose position falls in the second half of a movie frame,
    whichever neighbour was drawn first (the frame before, in playback and renders). Turning the editor's raw cache
    off avoids it; its final cache (keyed by scene frame) still caches playback. 4.2-4.5 key the cache by scene frame.
    """
    if bpy.app.version < (5, 0, 0) or not editor.use_cache_raw:
        return ""
    editor.use_cache_raw = False
    return ("turned the sequencer's raw cache off: Blender 5.0 caches retimed movie frames under the wrong index "
            "(takes would show the frame before on some frames)")


def sequencer_scene(context):
    """The scene the sequencer edits: 5.0's workspace ``sequencer_scene`` when set, else ``context.scene``."""
    return getattr(context, "sequencer_scene", None) or context.scene


def ensure_sequencer_scene(workspace, scene):
    """Let sequencer operators run on ``scene``: 5.0 polls the workspace's ``sequencer_scene`` (None by default),
    so it is set when unset (the sequencer then shows the scene that got the take); 4.2-4.5 have no such property."""
    if hasattr(workspace, "sequencer_scene") and workspace.sequencer_scene is None:
        workspace.sequencer_scene = scene
