#!/usr/bin/env bash
# Train the visible-watermark detector on a lent GPU machine, as one prepared device call.
#
# 1. Here: python -m clipaudit.safety.visible.pack --photos ../shared/photos --out .gpu
#    (the fit photos as WebP and the fonts cut to Latin: about 34 MB; the repo is 27 MB
#    and a device call carries at most 64 MiB in all).
# 2. The device tool: run(command="bash scripts/visible_gpu_train.sh", carry=[".gpu"],
#    timeout_s=600). The weights and their training record come back in $OUT/gpu.
# 3. Here: python -m clipaudit.safety.visible.train --out DIR --steps 0 \
#      --init <files_at>/gpu --photos ../shared/photos
#    measures them on the tune and held-out photos, which never leave this machine.
#
# The machine's image has torch, numpy, Pillow and scikit-learn; the package runs from src/.
# Extra arguments go to the trainer (they override the ones below).
set -euo pipefail
cd "$(dirname "$0")/.."
test -f .gpu/PACK.json || { echo "no .gpu/PACK.json: run step 1 and carry .gpu" >&2; exit 2; }
export PYTHONPATH=src PYTHONUNBUFFERED=1 CLIPAUDIT_FONT_DIRS=.gpu/fonts
out="${OUT:-/tmp/visible-gpu}"
mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
workers=$(( $(nproc) > 3 ? $(nproc) - 2 : 1 ))
# A budget by the clock (SECONDS_BUDGET), inside the call's 600 s with the bank and the save:
# the schedule anneals by whichever of steps and seconds runs out first.
python3 -m clipaudit.safety.visible.train --out "$out/gpu" --photos .gpu/photos \
  --device cuda --workers "$workers" --threads 2 --evaluate false \
  --seconds "${SECONDS_BUDGET:-450}" --steps 200000 --batch-pairs 128 --fresh-pairs 32 \
  --buffer 16384 --warmup 200 --widths 24 32 64 128 192 --depths 1 1 2 3 3 "$@" \
  2>&1 | tee "$out/train.log"
