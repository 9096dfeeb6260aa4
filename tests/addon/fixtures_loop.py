"""Fixtures of the artist's-loop tests (panel, jobs, sequencer), loaded with ``pytest_plugins = ["fixtures_loop"]``.

``loop`` gives the add-on's modules as registered by the shared ``registered_addon`` fixture (tests/addon/conftest.py),
so the tests drive the same job manager the operators use. That fixture registers the package directly rather
than through Blender's add-on manager, so ``loop`` adds the preferences entry that enabling would create.
Installing the built extension is tested in a subprocess (test_loop_extension.py), never in this process.
"""

from __future__ import annotations

import importlib
import types
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def loop(registered_addon):
    """Namespace of the registered add-on's modules, in an empty file with online access on; jobs cleared after."""
    import bpy

    bpy.ops.wm.read_homefile(use_empty=True)
    prefs_module = importlib.import_module(f"{registered_addon.__name__}.prefs")
    entry = None
    if prefs_module.ADDON_ID not in bpy.context.preferences.addons:
        entry = bpy.context.preferences.addons.new()
        entry.module = prefs_module.ADDON_ID
    online = bpy.context.preferences.system.use_online_access
    bpy.context.preferences.system.use_online_access = True
    names = ("client", "jobs", "sequencer", "compat", "prefs", "operators.session", "operators.backend",
             "ui.panels", "preview")
    ns = types.SimpleNamespace(**{n.split(".")[-1]: importlib.import_module(f"{registered_addon.__name__}.{n}")
                                  for n in names})
    ns.prefs_obj = ns.prefs.get()
    ns.prefs_obj.poll_interval = 0.05
    ns.drive = lambda until, **kw: drive(ns, until, **kw)
    ns.colour_ramp_video, ns.render_sequencer_red = colour_ramp_video, render_sequencer_red
    ns.colour_strip = colour_strip
    ns.small_shot, ns.free_port = small_shot, _free_port
    try:
        yield ns
    finally:
        ns.session.manager.shutdown()
        bpy.context.preferences.system.use_online_access = online
        if entry is not None:
            bpy.context.preferences.addons.remove(entry)


def drive(loop, until, timeout=60.0):
    """Call the session tick (what the timer does in the GUI) until ``until()`` or ``timeout`` s."""
    import time

    deadline = time.monotonic() + timeout
    while not until():
        if time.monotonic() > deadline:
            states = [(j.label, j.state, j.error) for j in loop.session.manager.jobs]
            raise AssertionError(f"timed out after {timeout} s; jobs: {states}")
        loop.session.tick()
        time.sleep(0.01)


def colour_ramp_video(path: Path, frames: int = 16, fps: float = 8.0, size=(64, 48)) -> np.ndarray:
    """Write an MP4 whose frame i is flat grey-green with red = 16·i (so a frame is known by its red); returns reds."""
    from trajplate.video import write_mp4

    reds = (np.arange(frames) * (256 // frames)).astype(np.uint8)
    video = np.zeros((frames, size[1], size[0], 3), np.uint8)
    video[..., 0] = reds[:, None, None]
    video[..., 1] = 128
    video[..., 2] = 64
    write_mp4(path, video, fps)
    return reds


def colour_strip(editor, name: str, channel: int, frame_start: int, frame_end: int):
    """A COLOR effect strip over frames ``[frame_start, frame_end)``: ``new_effect`` takes ``frame_end`` in 4.2-4.5
    and ``length`` in 5.0 (the add-on itself never makes effect strips)."""
    from addon import compat

    strips = compat.strips(editor)
    span = ({"length": frame_end - frame_start} if "length" in strips.bl_rna.functions["new_effect"].parameters
            else {"frame_end": frame_end})
    return strips.new_effect(name=name, type="COLOR", channel=channel, frame_start=frame_start, **span)


def render_sequencer_red(scene, frame: int, out_dir: Path) -> float:
    """Render the scene's sequencer at ``frame`` (Standard view, sRGB PNG) and return the mean red, 0-255."""
    import bpy

    scene.render.use_sequencer = True
    scene.view_settings.view_transform = "Standard"
    scene.render.image_settings.file_format = "PNG"
    scene.frame_set(frame)
    scene.render.filepath = str(out_dir / f"vse_{frame:04d}.png")
    with bpy.context.temp_override(scene=scene):
        bpy.ops.render.render(write_still=True)
    image = bpy.data.images.load(scene.render.filepath)
    pixels = np.empty(len(image.pixels), np.float32)
    image.pixels.foreach_get(pixels)
    bpy.data.images.remove(image)
    return float(pixels.reshape(-1, 4)[:, 0].mean() * 255)



def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def live_backend(tmp_path_factory):
    """The real ``trajplate serve`` on loopback (subprocess) with the test-only ``test-loop`` pipeline and tiny
    weights in a temp home; yields its URL. Stopped by PID at the end.

    The server runs in ``TRAJPLATE_BACKEND_PYTHON`` when set (scripts/test_compat.sh points it at the main venv, so
    the add-on runs on another bpy against the real backend), else in this Python; skips when neither has it."""
    import importlib.util
    import os
    import subprocess
    import sys
    import time
    import urllib.request

    python = os.environ.get("TRAJPLATE_BACKEND_PYTHON") or sys.executable
    if python == sys.executable and importlib.util.find_spec("fastapi") is None:
        pytest.skip("no backend environment here: set TRAJPLATE_BACKEND_PYTHON to a Python with trajplate installed")
    home = tmp_path_factory.mktemp("trajplate-home")
    port = _free_port()
    env = {**os.environ, "TRAJPLATE_HOME": str(home), "TRAJPLATE_PLUGINS": "test-loop=support.pipelines:LoopPipeline",
           "PYTHONPATH": os.pathsep.join([str(REPO / "tests"), os.environ.get("PYTHONPATH", "")])}
    env.pop("TRAJPLATE_TOKEN", None)
    log = open(home / "serve.log", "wb")
    proc = subprocess.Popen([python, "-m", "trajplate.cli", "serve", "--port", str(port),
                             "--data-dir", str(home / "data")], env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                urllib.request.urlopen(url + "/v1/health", timeout=2).read()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("trajplate serve did not start:\n" + (home / "serve.log").read_text()) from None
                time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def small_shot(frames: int = 12):
    """The standard test scene (3 entities, moving camera) at 96×64 and ``frames`` frames: a quick export."""
    from support.scenes import build_standard_shot

    return build_standard_shot(width=96, height=64, frames=frames)
