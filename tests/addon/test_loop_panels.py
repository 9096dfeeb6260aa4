"""The sidebar panels' draw code against the real UI API of this Blender (bpy has no screen to draw on headless).

Each section is drawn into a layout stand-in that checks every call against Blender's own RNA: the property exists
on the data, the operator is registered and has the property set on it, the icon is in this version's icon list
(icon names change between releases), the layout attribute exists. Run on 4.2, 4.5 and 5.0.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.blender_compat
pytest_plugins = ["fixtures_loop"]


class CheckedLayout:
    """Records what a draw function asks of ``UILayout`` and asserts it would work in this Blender."""

    def __init__(self, calls: list):
        self.calls = calls

    def __setattr__(self, name, value):
        import bpy

        if name != "calls":
            assert name in bpy.types.UILayout.bl_rna.properties, f"UILayout has no {name!r}"
        object.__setattr__(self, name, value)

    @staticmethod
    def _icon(icon):
        import bpy

        icons = bpy.types.UILayout.bl_rna.functions["label"].parameters["icon"].enum_items.keys()
        assert icon in icons, f"icon {icon!r} does not exist in Blender {bpy.app.version_string}"

    def _sub(self, *_args, **_kwargs):
        return CheckedLayout(self.calls)

    row = column = box = split = _sub

    def label(self, *, text="", icon="NONE"):
        self._icon(icon)
        self.calls.append(("label", text))

    def progress(self, *, factor=0.0, text=""):
        assert 0.0 <= factor <= 1.0
        self.calls.append(("progress", text))

    def prop(self, data, name, *, text=None, toggle=None, icon="NONE"):
        self._icon(icon)
        if name.startswith('["'):
            assert name[2:-2] in data, f"{data!r} has no custom property {name}"
        else:
            assert name in data.bl_rna.properties, f"{data.bl_rna.identifier} has no property {name!r}"
        self.calls.append(("prop", name))

    def operator(self, idname, *, text=None, icon="NONE", emboss=True):
        self._icon(icon)
        self.calls.append(("operator", idname))
        return _OperatorProps(idname)

    def operator_menu_enum(self, idname, prop, *, text=None, icon="NONE"):
        self._icon(icon)
        props = _OperatorProps(idname)
        assert props.rna.properties[prop].type == "ENUM", f"{idname}.{prop} is not an enum"
        self.calls.append(("menu", idname))
        return props


class _OperatorProps:
    """The operator properties ``layout.operator`` returns: only the operator's own properties may be set."""

    def __init__(self, idname):
        import bpy

        module, name = idname.split(".")
        assert hasattr(getattr(bpy.ops, module), name), f"operator {idname} is not registered"
        object.__setattr__(self, "rna", getattr(getattr(bpy.ops, module), name).get_rna_type())

    def __setattr__(self, name, value):
        assert name in self.rna.properties, f"operator {self.rna.identifier} has no property {name!r}"


def _draw_all(loop, context) -> list:
    calls = []
    for draw in (loop.panels.draw_backend, loop.panels.draw_shot, loop.panels.draw_generate, loop.panels.draw_takes):
        draw(CheckedLayout(calls), context)
    return calls


def test_panels_draw_on_an_empty_file(loop):
    import bpy

    calls = _draw_all(loop, bpy.context)
    assert ("label", "The scene has no camera") in calls and ("label", "No takes yet") in calls
    assert ("operator", "trajplate.generate") in calls and ("menu", "trajplate.set_pipeline") in calls


def test_panels_draw_a_shot_with_jobs_and_a_take(loop, tmp_path):
    import bpy

    scene = loop.small_shot(frames=4)
    editor = scene.sequence_editor_create()
    loop.colour_strip(editor, "blocker", 1, 1, 3)  # a strip that is not a take is not listed
    loop.colour_ramp_video(tmp_path / ".dl.mp4", frames=4)
    strip = loop.sequencer.add_take(scene, tmp_path / ".dl.mp4", {"job_id": "j1", "pipeline": "posetraj", "seed": 3,
                                                                  "tiny": True, "score": {"summary": {"objmc_px": 2.0}}},
                                    shot=scene.name, shot_scene=scene.name, frame_start=1, frame_end=4,
                                    backend_url="http://127.0.0.1:1", params={})
    editor.active_strip = strip
    spec = loop.jobs.JobSpec(scene=scene.name, sequencer_scene=scene.name, shot=scene.name, frame_start=1,
                             frame_end=4, params={"pipeline": "posetraj", "seed": 3}, backend_url="http://127.0.0.1:1",
                             token="", takes_dir=Path(tmp_path))
    running, failed = loop.jobs.Job(spec, state="running", stage="denoising", step=3, steps=8), loop.jobs.Job(spec)
    failed.state, failed.error = "failed", "Backend not reachable at http://127.0.0.1:1"
    loop.session.manager.jobs.extend([running, failed])

    calls = _draw_all(loop, bpy.context)
    assert ("progress", "denoising 3/8") in calls
    assert ("label", failed.error) in calls and ("operator", "trajplate.retry_job") in calls
    assert ("operator", "trajplate.select_take") in calls and ("label", "objmc_px 2") in calls
    assert ("label", "Made with tiny test weights") in calls
    assert not [c for c in calls if c == ("label", "No takes yet")]


def test_a_long_error_is_drawn_whole_on_several_lines(loop):
    """Blender cuts a long label in its middle; the reason at the end of an error line must stay readable."""
    import bpy

    error = ("Local backend exited (code 2): trajplate serve: --max-upload-mb and --max-queue must be positive "
             "(full log: Local Backend ▸ Log)")
    before = loop.session.backend()
    loop.session._backend["state"] = {**before, "error": error}
    try:
        calls = []
        loop.panels.draw_backend(CheckedLayout(calls), bpy.context)
    finally:
        loop.session._backend["state"] = before
    labels = [text for kind, text in calls if kind == "label"]
    lines = labels[next(i for i, text in enumerate(labels) if text.startswith("Local backend exited")):]
    while len(" ".join(lines)) > len(error):
        lines.pop()
    assert " ".join(lines) == error and len(lines) > 1
    assert max(map(len, lines)) < len(error) // 2 + 10  # wrapped to the sidebar, not one long label
