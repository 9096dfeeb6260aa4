"""Add-on preferences: which backend, how long to wait, where takes go, how to start a local backend.

The token lives only in the user preferences (masked field; ``TRAJPLATE_TOKEN`` overrides it when set), never in
the .blend, a take's provenance or a log line.
"""

from __future__ import annotations

import os

import bpy
from bpy.props import FloatProperty, IntProperty, StringProperty

# bl_ext.<repo>.trajplate.addon -> bl_ext.<repo>.trajplate: preferences belong to the extension's top package.
ADDON_ID = __package__.rsplit(".", 1)[0]
DEFAULT_URL = "http://127.0.0.1:8765"


class TRAJPLATE_AP_preferences(bpy.types.AddonPreferences):
    bl_idname = ADDON_ID

    backend_url: StringProperty(
        name="Backend URL", default=DEFAULT_URL,
        description="TrajPlate backend (trajplate serve). Addresses other than this machine need Blender's "
                    "online access (Preferences ▸ System ▸ Network) and a token")
    token: StringProperty(
        name="Token", subtype="PASSWORD", default="",
        description="Bearer token of a remote backend (TRAJPLATE_TOKEN in the environment takes precedence)")
    timeout: FloatProperty(name="Request timeout (s)", default=10.0, min=1.0, max=600.0,
                           description="How long one request may wait for the backend")
    download_timeout: FloatProperty(name="Download timeout (s)", default=60.0, min=5.0, max=3600.0,
                                    description="How long a take download may stall before it is abandoned")
    poll_interval: FloatProperty(name="Progress interval (s)", default=0.5, min=0.1, max=10.0,
                                 description="How often a running job's progress is asked for")
    takes_dir: StringProperty(
        name="Takes folder", subtype="DIR_PATH", default="//trajplate",
        description="Where generated takes are saved; '//' is the .blend's folder (a temp folder while unsaved)")
    local_python: StringProperty(
        name="Backend Python", subtype="FILE_PATH", default="",
        description="Python of an environment where TrajPlate's backend is installed (pip install -e . in the repo); "
                    "the add-on never installs packages into Blender's Python")
    local_port: IntProperty(name="Port", default=8765, min=1024, max=65535)
    local_args: StringProperty(name="Extra arguments", default="",
                               description="Extra arguments for 'trajplate serve', e.g. --data-dir /path")

    def draw(self, context):
        layout = self.layout
        col = layout.column(heading="Backend")
        col.prop(self, "backend_url")
        col.prop(self, "token")
        col.prop(self, "timeout")
        col.prop(self, "download_timeout")
        col.prop(self, "poll_interval")
        layout.prop(self, "takes_dir")
        box = layout.box()
        box.label(text="Local backend (started on 127.0.0.1)", icon="CONSOLE")
        box.prop(self, "local_python")
        row = box.row()
        row.prop(self, "local_port")
        row.prop(self, "local_args")


def get(context=None) -> TRAJPLATE_AP_preferences:
    return (context or bpy.context).preferences.addons[ADDON_ID].preferences


def token(prefs) -> str:
    return os.environ.get("TRAJPLATE_TOKEN") or prefs.token


def register():
    bpy.utils.register_class(TRAJPLATE_AP_preferences)


def unregister():
    bpy.utils.unregister_class(TRAJPLATE_AP_preferences)
