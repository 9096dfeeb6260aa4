#!/usr/bin/env bash
# The main job: a real Blender scene -> shot bundle -> plate (MP4) under out/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
mkdir -p out
SCENE=${1:-../shared/scenes/03_all_animations.blend}
python scripts/export_shot.py "$SCENE" -o out/shot.zip
