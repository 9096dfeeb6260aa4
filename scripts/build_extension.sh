#!/usr/bin/env bash
# Validate blender_manifest.toml and build the extension zip (<out>/trajplate-<version>.zip) with Blender's own
# extension CLI, which ships inside the bpy wheel, so no Blender binary is needed.
#   bash scripts/build_extension.sh [out-dir]        (default: dist/; PYTHON overrides the interpreter)
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-dist}"
python="${PYTHON:-.venv/bin/python}"
cli="$("$python" - <<'PY'
import importlib.util
from pathlib import Path

spec = importlib.util.find_spec("bpy")  # locates the wheel without importing Blender
if spec is None:
    raise SystemExit("bpy is not installed in this interpreter; run scripts/setup.sh or set PYTHON")
found = sorted(Path(spec.origin).parent.glob("*/scripts/addons_core/bl_pkg/cli/blender_ext.py"))
if not found:
    raise SystemExit(f"no blender_ext.py under {Path(spec.origin).parent}")
print(found[-1])
PY
)"
mkdir -p "$out"
"$python" "$cli" validate .
"$python" "$cli" build --source-dir . --output-dir "$out"
