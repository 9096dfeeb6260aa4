"""Takes in the sequencer: a downloaded MP4 becomes a movie strip lined up with the shot, with its provenance.

Retiming (generated fps rarely equals the scene fps, e.g. 8 fps against 24): the scene fps is never changed.
Instead, two retiming keys pin the take to the shot through the backend's time map ``shot_frames`` (the Blender
frame each generated frame stands for, from the job metadata): generated frame 0 sits on ``shot_frames[0]`` and
the last generated frame on ``shot_frames[-1]``; Blender interpolates linearly between them (all five pipelines
sample the shot uniformly) and shows, on each scene frame, the generated frame whose time-map frame is nearest. The strip's handles are then set to exactly ``[frame_start, frame_end + 1)``, holding
the first / last generated frame where the time map starts after or ends before the shot. Without
``shot_frames`` the first and last generated frames go on the shot's first and last frames. In Blender 5.0 a
retimed take turns the sequencer's raw cache off (:func:`.compat.retimed_movie_cache_fix`: that cache shows retimed
movie frames off by one there).
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path

import bpy

from . import compat

PROP_PREFIX = "trajplate_"
_TAKE_RE = re.compile(r"^take_(\d+)_")


def slug(name: str) -> str:
    """A file-system-safe version of a shot name (letters, digits, ``._-``)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "shot"


def takes_folder(setting: str, shot: str) -> tuple[Path, str]:
    """Absolute folder for the takes of ``shot`` and a warning ('' if none).

    ``setting`` is the preference (default ``//trajplate``: next to the .blend). A relative setting in an unsaved
    .blend falls back to the system temp folder, with a warning telling the artist to save.
    """
    if setting.startswith("//") and not bpy.data.filepath:
        folder = Path(tempfile.gettempdir()) / "trajplate" / slug(shot)
        return folder, f"The .blend is not saved: takes go to {folder}; save the file to keep them next to it"
    return Path(bpy.path.abspath(setting)) / slug(shot), ""


def next_take_number(folder: Path) -> int:
    """1 + the highest ``take_NNN_*`` number in ``folder`` (takes are never overwritten)."""
    numbers = [int(m.group(1)) for p in folder.glob("take_*") if (m := _TAKE_RE.match(p.name))]
    return max(numbers, default=0) + 1


def free_channel(editor, frame_start: int, frame_end: int) -> int:
    """The lowest channel (1..128) with no top-level strip overlapping frames ``[frame_start, frame_end)``."""
    busy = {s.channel for s in compat.strips(editor)
            if s.frame_final_start < frame_end and s.frame_final_end > frame_start}
    for channel in range(1, 129):
        if channel not in busy:
            return channel
    raise RuntimeError("all 128 sequencer channels are busy over the shot's frame range; free one")


def _sequencer_area():
    """A (window, area, region, restore) to run sequencer operators in; switches an area if none shows a sequencer."""
    windows = bpy.context.window_manager.windows
    if not windows:
        raise RuntimeError("no Blender window to run the sequencer retiming in")
    for window in windows:
        for area in window.screen.areas:
            if area.type == "SEQUENCE_EDITOR":
                return window, area, next(r for r in area.regions if r.type == "WINDOW"), None
    window = windows[0]
    area = max(window.screen.areas, key=lambda a: a.width * a.height)
    old = area.ui_type
    area.type = "SEQUENCE_EDITOR"
    return window, area, next(r for r in area.regions if r.type == "WINDOW"), old


def retime(scene, strip, first: int, last: int) -> bool:
    """Pin the strip's first frame on scene frame ``first`` and its last (frame T − 1) on ``last``, linear in between:
    frame i plays at ``first + i·(last − first)/(T − 1)`` and each scene frame shows the nearest one.

    Through ``sequencer.retiming_segment_speed_set`` (keys through RNA are unsafe in bpy 4.5: ``retiming_keys.add``
    crashes on a strip without keys and key frames read back wrong when other strips exist). The end key stands for
    content position :func:`.compat.retiming_span` (T in 5.0, T − 1 before) and goes where that position falls on
    the line above, rounded to a frame (5.0 can then be nearest only up to 1/(2·span) frame of a tie). The
    operator's length rule differs between versions (4.5: length = T − 1 frame steps + 1 at 100 %; 4.2: T + 1;
    5.0: T), so it is measured: the strip length at 100 % and 50 % gives ``length = k · 100 / speed + c``, with the
    key at ``first + k · 100 / speed``. Speeds pass through float32 and 4.2 floors the key position, so a landing
    one frame off is retried with the target nudged. Returns whether the strip was retimed (not one frame per frame).
    Raises ``RuntimeError`` if Blender did not land the key there.
    """
    length = strip.frame_final_duration
    strip.frame_start = first
    if length < 2 or first + length - 1 == last:
        return False
    if last <= first:
        raise ValueError(f"shot_frames must increase; got first {first}, last {last}")
    editor = scene.sequence_editor
    selected = [s for s in compat.strips_all(editor) if s.select]
    active = editor.active_strip
    for s in selected:
        s.select = False
    strip.select = True
    editor.active_strip = strip
    window, area, region, restore = _sequencer_area()
    try:
        compat.ensure_sequencer_scene(window.workspace, scene)
        with bpy.context.temp_override(window=window, area=area, region=region, scene=scene):
            def length_at(speed: float) -> int:
                bpy.ops.sequencer.retiming_segment_speed_set(speed=speed, keep_retiming=True)
                return strip.frame_final_end - first

            at_100 = length_at(100.0)
            k = length_at(50.0) - at_100
            span = round(compat.retiming_span(length) * (last - first) / (length - 1))  # end key - first
            target = span + at_100 - k
            landed = next((n for n in (0.0, 0.3, -0.3) if length_at(100.0 * k / (span + n)) == target), None)
    finally:
        if restore is not None:
            area.ui_type = restore
        strip.select = False
        for s in selected:
            s.select = True
        editor.active_strip = active
    if landed is None:
        raise RuntimeError(f"retiming put the take's end on frame {strip.frame_final_end}, not {first + target}")
    return True


def _score_summary(score) -> str:
    """One short line from the metadata's ``score``: its ``summary`` (a string, or a dict of the few numbers to
    show) or else its top-level numbers."""
    summary = score.get("summary", score) if isinstance(score, dict) else score
    if isinstance(summary, dict):
        numbers = [f"{k} {v:.3g}" for k, v in summary.items() if isinstance(v, int | float) and not isinstance(v, bool)]
        return ", ".join(numbers[:4])
    return str(summary)


def _id_safe(value):
    """A value Blender ID properties accept (str/int/float/bool and dicts/lists of them); None dropped."""
    if isinstance(value, dict):
        return {str(k): _id_safe(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        items = [_id_safe(v) for v in value if v is not None]
        return items if all(isinstance(v, int | float) for v in items) else json.dumps(items)
    if isinstance(value, int) and not isinstance(value, bool) and not -(2**31) <= value < 2**31:
        return str(value)  # ID properties are 32-bit ints
    return value


def provenance(metadata: dict, backend_url: str) -> dict:
    """Strip custom properties (``trajplate_*``) from the job metadata: who made this take, and how."""
    prompts = metadata.get("prompts") or {}
    props = {
        "job_id": metadata.get("job_id", ""),
        "pipeline": metadata.get("pipeline", ""),
        "weights_revision": json.dumps(metadata.get("weights", metadata.get("revisions", {})), sort_keys=True),
        "seed": metadata.get("seed", 0),
        "steps": metadata.get("steps", 0),
        "guidance": float(metadata.get("guidance") or 0.0),
        "prompt": metadata.get("prompt", prompts.get("prompt", "") if isinstance(prompts, dict) else ""),
        "negative_prompt": metadata.get("negative_prompt",
                                        prompts.get("negative_prompt", "") if isinstance(prompts, dict) else ""),
        "bundle_sha256": metadata.get("bundle_sha256", ""),
        "backend_url": backend_url,
        "tiny": bool(metadata.get("tiny", False)),
    }
    if metadata.get("score") is not None:
        props["score"] = metadata["score"]
        props["score_summary"] = _score_summary(metadata["score"])
    return {PROP_PREFIX + k: _id_safe(v) for k, v in props.items()}


def add_take(scene, video: Path, metadata: dict, *, shot: str, shot_scene: str, frame_start: int, frame_end: int,
             backend_url: str, params: dict):
    """Move the downloaded ``video`` to its take name and add it as a movie strip; returns the strip.

    The file is renamed to ``take_NNN_<pipeline>_seed<s>.mp4`` in its folder (never over an earlier take) and
    the metadata is written beside it as ``.json``. The strip goes on the lowest free channel over
    ``[frame_start, frame_end]`` (inclusive Blender frames), retimed as the module docstring says, named
    ``<shot> · <pipeline> · seed <s> · take <n>``, and carries :func:`provenance` plus the exported scene's name
    ``shot_scene`` (for "Re-generate this take"). Raises ``RuntimeError`` when
    Blender cannot read the video (no strip is left behind then).
    """
    pipeline = metadata.get("pipeline") or params.get("pipeline", "?")
    seed = metadata.get("seed", params.get("seed", 0))
    folder = video.parent
    number = next_take_number(folder)
    while (target := folder / f"take_{number:03d}_{slug(pipeline)}_seed{seed}.mp4").exists():
        number += 1
    os.replace(video, target)
    meta_path = target.with_suffix(".json")
    meta_path.write_text(json.dumps(metadata, indent=2, sort_keys=True), encoding="utf-8")

    editor = scene.sequence_editor_create()
    channel = free_channel(editor, frame_start, frame_end + 1)
    strip = None
    try:
        strip = compat.strips(editor).new_movie(f"{shot} · {pipeline} · seed {seed} · take {number}", str(target),
                                                channel, frame_start, fit_method="FIT")
        if strip.frame_final_duration <= 1 and metadata.get("frame_count", 2) > 1:
            raise RuntimeError(f"Blender could not read the video {target}")  # new_movie does not raise on it
        shot_frames = metadata.get("shot_frames") or []
        first, last = ((round(shot_frames[0]), round(shot_frames[-1])) if len(shot_frames) >= 2
                       else (frame_start, frame_end))
        if retime(scene, strip, first, last):
            note = compat.retimed_movie_cache_fix(editor)
            if note:
                print(f"TrajPlate: {note}")
        strip.frame_final_start = frame_start
        strip.frame_final_end = frame_end + 1
        strip.channel = channel  # moving the strip may have bumped it on an overlap
        for key, value in provenance(metadata, backend_url).items():
            strip[key] = value
        strip[PROP_PREFIX + "metadata_path"] = bpy.path.relpath(str(meta_path)) if bpy.data.filepath else str(meta_path)
        strip[PROP_PREFIX + "take"] = number
        strip[PROP_PREFIX + "scene"] = shot_scene
    except Exception:
        # No half-made take: no strip, no file.
        if strip is not None:
            compat.strips(editor).remove(strip)
        target.unlink(missing_ok=True)
        meta_path.unlink(missing_ok=True)
        raise
    return strip


def takes(scene) -> list:
    """The scene's TrajPlate takes (strips carrying a job id), newest first."""
    editor = scene.sequence_editor
    if editor is None:
        return []
    found = [s for s in compat.strips_all(editor) if PROP_PREFIX + "job_id" in s]
    return sorted(found, key=lambda s: s.get(PROP_PREFIX + "take", 0), reverse=True)
