#!/usr/bin/env bash
# Run the add-on's blender_compat tests (export, background export) on the other bpy versions the manifest claims:
# 4.2 LTS and 5.0, each in its own venv with only bpy + pytest (.venv-bpy42, .venv-bpy50). The main suite covers 4.5.
# Idempotent: a venv is installed once (stamp file) and only reused afterwards. Tests that need the backend skip.
#   bash scripts/test_compat.sh [42 50] [-- extra pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
versions=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do versions+=("$1"); shift; done
[ $# -gt 0 ] && shift  # the "--"
[ ${#versions[@]} -gt 0 ] || versions=(42 50)
for v in "${versions[@]}"; do
  case "$v" in
    42) spec="bpy==4.2.*" ;;
    50) spec="bpy==5.0.*" ;;
    *) echo "unknown bpy version '$v': use 42 or 50" >&2; exit 2 ;;
  esac
  venv=".venv-bpy$v"
  stamp="$venv/.trajplate-installed"
  if [ ! -f "$stamp" ]; then
    [ -x "$venv/bin/python" ] || "$PY" -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --upgrade pip
    "$venv/bin/python" -m pip install --quiet "$spec" numpy "pytest>=8"
    touch "$stamp"
  fi
  echo "== $("$venv/bin/python" -c 'import bpy; print("bpy", bpy.app.version_string)' 2>/dev/null | tail -n 1)"
  # os._exit after pytest: bpy 4.2.23 segfaults at interpreter exit once a PropertyGroup subclass with a Python
  # method was registered and unregistered (scene.trajplate's settings), even after every test passed.
  "$venv/bin/python" -c 'import os, sys, pytest
code = int(pytest.main(sys.argv[1:]))
sys.stdout.flush(); sys.stderr.flush()
os._exit(code)' tests/addon -m blender_compat -q -p no:cacheprovider "$@"
done
