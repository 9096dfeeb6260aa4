"""Start / Stop Local Backend in the artist's loop: a real ``trajplate serve`` process launched by the operator.

The add-on waits for the port (the server opens it only after importing every pipeline package), then lists the
pipelines; a server that exits at startup is reported with its exit code and the reason it printed.
"""

from __future__ import annotations

import importlib.util
import os
import shlex
import sys

import pytest

pytest_plugins = ["fixtures_loop"]
pytestmark = pytest.mark.blender_compat


@pytest.fixture
def local(loop, tmp_path):
    """The preferences pointed at a backend Python (TRAJPLATE_BACKEND_PYTHON or this one) and a free port; the
    local backend is stopped after the test."""
    import bpy

    python = os.environ.get("TRAJPLATE_BACKEND_PYTHON") or sys.executable
    if python == sys.executable and importlib.util.find_spec("fastapi") is None:
        pytest.skip("no backend environment here: set TRAJPLATE_BACKEND_PYTHON to a Python with trajplate installed")
    p = loop.prefs_obj
    p.local_python, p.local_port = python, loop.free_port()
    p.local_args = f"--data-dir {shlex.quote(str(tmp_path / 'data'))} --devices cpu"
    try:
        yield p
    finally:
        bpy.ops.trajplate.local_backend(action="STOP")
        loop.drive(lambda: not loop.session.backend()["busy"], timeout=30)


def test_start_waits_for_the_port_then_lists_the_pipelines(loop, local):
    import bpy

    assert bpy.ops.trajplate.local_backend(action="START") == {"FINISHED"}
    assert local.backend_url == f"http://127.0.0.1:{local.local_port}"
    state = loop.session.backend()
    assert state["busy"] and state["starting"]  # the panel reads "Starting local backend…" until the port opens
    loop.drive(lambda: not loop.session.backend()["busy"], timeout=240)
    state = loop.session.backend()
    assert state["health"] and state["health"]["status"] == "ok" and not state["error"], state["error"]
    assert {"magicmotion", "trajectorycrafter", "3dtrajmaster"} <= {p["id"] for p in state["pipelines"]}

    bpy.ops.trajplate.local_backend(action="STOP")
    assert not loop.backend.local.running
    loop.drive(lambda: not loop.session.backend()["busy"], timeout=30)
    assert loop.session.backend()["health"] is None  # no longer shown as connected
    assert "not reachable" in loop.session.backend()["error"]


def test_a_backend_that_exits_at_startup_is_reported_with_its_reason(loop, local):
    import bpy

    local.local_args += " --max-queue 0"
    bpy.ops.trajplate.local_backend(action="START")
    loop.drive(lambda: not loop.session.backend()["busy"], timeout=120)
    state = loop.session.backend()
    assert state["health"] is None and not loop.backend.local.running
    assert state["error"].startswith("Local backend exited (code 2): trajplate serve: --max-upload-mb and "
                                     "--max-queue must be positive"), state["error"]


def test_a_backend_that_never_opens_its_port_is_given_up_on(loop):
    """The wait is bounded: a live process whose port stays closed ends with a line saying so, not a hang."""
    client = loop.client.Client(f"http://127.0.0.1:{loop.free_port()}", timeout=1)
    loop.session.refresh_backend(client, starting=lambda: None, wait_s=1.0)
    assert loop.session.backend()["starting"]
    loop.drive(lambda: not loop.session.backend()["busy"], timeout=30)
    assert loop.session.backend()["error"].startswith("Local backend still starting after 1 s (port not open)")
