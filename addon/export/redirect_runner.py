"""Child side of an export with a redirect camera: the export runner, then the redirect camera in the same process.

Takes the arguments of :mod:`.runner` plus ``--redirect-camera=NAME --redirect-output=PATH``; after the bundle is
written (the .blend is still open) it samples NAME at the bundle's frames with :func:`.redirect.redirect_camera` and
writes PATH (.npz, renamed into place). Errors are protocol ``error`` lines, as in the runner.
"""

import argparse
import io
import json
import os
import sys
import zipfile
from pathlib import Path

EXTENSION_ROOT = Path(__file__).resolve().parents[2]


def main(argv):
    sys.path.insert(0, str(EXTENSION_ROOT))
    from addon.export import runner

    parser = argparse.ArgumentParser(prog="redirect_runner.py", add_help=False)
    parser.add_argument("--redirect-camera", required=True)
    parser.add_argument("--redirect-output", required=True, type=Path)
    ours, export_argv = parser.parse_known_args(argv)
    bundle = argparse.ArgumentParser(add_help=False)
    bundle.add_argument("-o", "--output", required=True, type=Path)
    code = runner.main(export_argv)
    if code:
        return code
    try:
        write_redirect(bundle.parse_known_args(export_argv)[0].output, ours.redirect_camera, ours.redirect_output)
    except Exception as exc:  # the parent shows one line; ExportError messages name the camera and the fix
        runner.emit(error=f"Redirect camera: {exc}")
        return 1
    return 0


def write_redirect(bundle, camera_name, output):
    import bpy
    import numpy as np

    from addon.export.redirect import redirect_camera

    with zipfile.ZipFile(bundle) as archive:
        meta = json.loads(archive.read("shot.json"))
        with np.load(io.BytesIO(archive.read("arrays.npz"))) as arrays:
            frames = arrays["frame_numbers"]
    scene = bpy.data.scenes[meta["scene"]]
    camera = scene.objects.get(camera_name)
    if camera is None:
        raise ValueError(f"'{camera_name}' is not an object of scene '{scene.name}'; pick a camera of the shot's scene")
    tmp = output.with_name(f".{output.name}.{os.getpid()}.tmp.npz")
    try:
        np.savez(tmp, **redirect_camera(scene, frames, camera))
        os.replace(tmp, output)
    finally:
        tmp.unlink(missing_ok=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else sys.argv[1:]))
