#!/usr/bin/env bash
# `contrastive run` on a folder of 3 classes x 80 JPEG photos of 40-90 px, as a new user would
# run it: no extra flags (the batch, steps per epoch and kNN k fitted to the 173 training
# images), then --image-size 64,64. Prints each run's wall time, the estimate, what was
# resized and fitted, the load average and the accuracy table; bench/results/own_images.txt
# keeps that summary, $WORK/<name>.log the full logs.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
WORK=${WORK:-$(mktemp -d)}
SUMMARY=bench/results/own_images.txt
"$PYTHON" bench/photo_folder.py "$WORK/photos" --classes 3 --per-class 80 --sizes 40,90 \
    --formats jpeg --modes RGB --seed 0 | tee "$SUMMARY"
echo "$(date -u +%FT%TZ), $(nproc) CPUs: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)" \
    | tee -a "$SUMMARY"
run() {
    local name=$1; shift
    local start=$SECONDS
    "$PYTHON" -m pipelines.cli run --source "$WORK/photos" --runs-dir "$WORK/runs-$name" "$@" \
        > "$WORK/$name.log" 2>&1
    {
        echo
        echo "== contrastive run --source DIR $*: $((SECONDS - start)) s wall, load $(cut -d' ' -f1-3 /proc/loadavg)"
        grep -E "estimated training|^│|pipeline time" "$WORK/$name.log"
        grep -hE "images differ|resized [0-9]+ images" "$WORK/runs-$name"/latest/logs/ingest.log \
            | sed 's/.*INFO\]: //'
        grep -h "fitted to the data" "$WORK/runs-$name"/latest/logs/pretrain-supcon.log \
            | sed 's/.*INFO\]: //'
    } | tee -a "$SUMMARY"
}
run default
run size64 --image-size 64,64
