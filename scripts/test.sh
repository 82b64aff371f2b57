#!/usr/bin/env bash
# Set up from a clean clone and run the whole test suite (lint and types included).
# This is the README's test command and exactly what .ci/run runs.
set -euo pipefail
cd "$(dirname "$0")/.."
# OpenCV (used by invisible-watermark) needs these shared libraries from Debian.
if ! ldconfig -p | grep -q 'libGL.so.1' || ! ldconfig -p | grep -q 'libgthread-2.0.so.0'; then
  apt-get update -q && apt-get install -y -q libgl1 libglib2.0-0
fi
# The report's browser test drives Debian's headless Chromium through its chromedriver.
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  apt-get update -q && apt-get install -y -q chromium chromium-driver
fi
# torch and its CUDA libraries take several GB: say so plainly when the disk is short
# (a CI machine once stopped here with "No space left on device"), and keep no pip cache.
free_kb="$(df -Pk . | awk 'NR==2 {print $4}')"
if [ "${free_kb:-0}" -lt 12000000 ]; then
  echo "warning: only $((free_kb / 1024)) MiB free here; the install needs about 12 GB" >&2
fi
python3 -m venv .venv
.venv/bin/pip install -q --no-cache-dir -e '.[test]'
# The docs site: a broken link or a page missing from the nav fails here.
site="$(mktemp -d)"
NO_MKDOCS_2_WARNING=1 .venv/bin/mkdocs build --strict -q -d "$site/site"
rm -rf "$site"
# Two worker processes (pytest-xdist), each test file kept on one worker so its module
# fixtures (trained folders, curated runs) are built once: 13-14 minutes here, 23 serially.
.venv/bin/python -m pytest -q -n 2 --dist loadfile "$@"
