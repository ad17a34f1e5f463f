#!/usr/bin/env bash
# `contrastive run` on a folder of 3 classes x 80 JPEG photos of 40-90 px, as a new user would
# run it: no extra flags, then --image-size 64,64. Prints the wall time of each, keeps the full
# logs in bench/results/own_images-*.log (accuracies, the estimate, what was resized).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
WORK=${WORK:-$(mktemp -d)}
"$PYTHON" bench/photo_folder.py "$WORK/photos" --classes 3 --per-class 80 --sizes 40,90 \
    --formats jpeg --modes RGB --seed 0
run() {
    local name=$1; shift
    local start=$SECONDS
    "$PYTHON" -m pipelines.cli run --source "$WORK/photos" --runs-dir "$WORK/runs-$name" "$@" \
        > "bench/results/own_images-$name.log" 2>&1
    echo "$name: $((SECONDS - start)) s wall (contrastive run --source DIR $*)"
    grep -E "estimated training|images differ|resized [0-9]+ images|^│|pipeline time" \
        "bench/results/own_images-$name.log" | sed 's/.*INFO\]: //'
}
run default
run size64 --image-size 64,64
