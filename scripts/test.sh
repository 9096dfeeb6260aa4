#!/usr/bin/env bash
# Set up and run the whole TrajPlate test suite (real bpy, real HTTP, tiny models, CPU only).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
ruff check .
python -m pytest "$@"
