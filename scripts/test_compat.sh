#!/usr/bin/env bash
# Run the add-on's blender_compat tests (export, background export, the artist's loop: takes in the sequencer,
# control preview, panels, the built extension, Generate against a real backend) on the other bpy versions the
# manifest claims: 4.2 LTS and 5.0, each in its own venv with only bpy, numpy, pytest and PyAV (.venv-bpy42,
# .venv-bpy50). The main suite covers 4.5.
# PyAV and backend/ on PYTHONPATH let the tests write takes exactly as the backend does (trajplate.video); the
# Generate tests start `trajplate serve` with the main venv's Python (TRAJPLATE_BACKEND_PYTHON), so the add-on on
# this bpy talks to the real backend. Without .venv those tests skip.
# Idempotent: a venv is installed once per package list (stamp file) and only reused afterwards.
#   bash scripts/test_compat.sh [42 50] [-- extra pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
versions=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do versions+=("$1"); shift; done
[ $# -gt 0 ] && shift  # the "--"
[ ${#versions[@]} -gt 0 ] || versions=(42 50)
export PYTHONPATH="$PWD/backend${PYTHONPATH:+:$PYTHONPATH}"
if [ -z "${TRAJPLATE_BACKEND_PYTHON:-}" ] && [ -x .venv/bin/python ]; then
  export TRAJPLATE_BACKEND_PYTHON="$PWD/.venv/bin/python"
fi
for v in "${versions[@]}"; do
  case "$v" in
    42) spec="bpy==4.2.*" ;;
    50) spec="bpy==5.0.*" ;;
    *) echo "unknown bpy version '$v': use 42 or 50" >&2; exit 2 ;;
  esac
  venv=".venv-bpy$v"
  stamp="$venv/.trajplate-installed"
  packages="$spec numpy pytest>=8 av>=12"
  if [ "$(cat "$stamp" 2>/dev/null)" != "$packages" ]; then
    [ -x "$venv/bin/python" ] || "$PY" -m venv "$venv"
    # without PYTHONPATH: pip would see backend/'s trajplate metadata and warn about its (absent) dependencies
    PYTHONPATH= "$venv/bin/python" -m pip install --quiet --upgrade pip
    # shellcheck disable=SC2086  # one word per package
    PYTHONPATH= "$venv/bin/python" -m pip install --quiet $packages
    echo "$packages" > "$stamp"
  fi
  echo "== $("$venv/bin/python" -c 'import bpy; print("bpy", bpy.app.version_string)' 2>/dev/null | tail -n 1)"
  # os._exit after pytest: bpy 4.2.23 segfaults at interpreter exit once a PropertyGroup subclass with a Python
  # method was registered and unregistered (scene.trajplate's settings), even after every test passed.
  "$venv/bin/python" -c 'import os, sys, pytest
code = int(pytest.main(sys.argv[1:]))
sys.stdout.flush(); sys.stderr.flush()
os._exit(code)' tests/addon -m blender_compat -q -p no:cacheprovider "$@"
done
