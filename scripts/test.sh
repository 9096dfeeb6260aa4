#!/usr/bin/env bash
# Set up and run the whole TrajPlate test suite: real bpy 4.5 LTS headless, real HTTP, real SQLite, tiny models,
# CPU only; then the add-on's export and artist-loop tests on the other Blender versions the manifest claims
# (bpy 4.2 LTS and 5.0, each in its own venv). Extra arguments go to the main pytest run.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
ruff check .
python -m pytest "$@"
bash scripts/test_compat.sh 42 50
