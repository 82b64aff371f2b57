"""No command goes online unasked: onnxruntime's telemetry is off wherever clipaudit is."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def test_onnxruntime_writes_no_device_id_and_sends_no_telemetry(tmp_path: Path) -> None:
    """Imported after clipaudit, onnxruntime wrote ~/.cache/Microsoft/.../deviceid at once and
    looked up mobile.events.data.microsoft.com from a background thread."""
    env = {k: v for k, v in os.environ.items() if k != "ORT_DISABLE_TELEMETRY"}
    env["HOME"] = str(tmp_path)
    code = (
        "import clipaudit.safety.nudity, onnxruntime, os, time; time.sleep(0.5); "
        "print(os.environ['ORT_DISABLE_TELEMETRY'])"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "1"
    assert [p.relative_to(tmp_path) for p in tmp_path.rglob("*")] == []
