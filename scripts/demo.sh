#!/usr/bin/env bash
# The main job: a real Blender scene -> shot bundle -> plate (MP4) under out/.
# Uses the pipeline's real weights when they are in the Hugging Face cache (`trajplate download magicmotion`);
# otherwise tiny random weights, and the run says so loudly.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
mkdir -p out
SCENE=${1:-../shared/scenes/03_all_animations.blend}
PIPELINE=${2:-magicmotion}
# The shared scenes carry no prompts (the add-on's panel writes them into the .blend); give the take one here.
PROMPT=${PROMPT:-"a red cube, a grey sphere and a small tetrahedron drift across a bright studio floor"}
python scripts/export_shot.py "$SCENE" -o out/shot.zip
trajplate pipelines
trajplate run out/shot.zip --pipeline "$PIPELINE" --prompt "$PROMPT" --score -o out/plate.mp4
echo "plate: out/plate.mp4 (provenance: out/plate.json)"
