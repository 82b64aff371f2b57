"""Peak memory of curating full-HD clips: this tree against an earlier commit (``--before``),
stages ``quality,video`` (no model), 64-clip batches as curate's default.

    python bench/video_memory.py --before d4824a6 [--n 64]

Writes N clips of 3 s at 8 fps, 1920 x 1080 (a block moving over a gradient), as an image
folder; each tree curates it in a child process (the earlier one from a git worktree), whose
peak RSS (``ru_maxrss``) is read. Writes bench/results/video_memory.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHILD = (
    "import resource, sys; from clipaudit.curate.pipeline import CurateConfig, curate; "
    "curate(CurateConfig(dataset=sys.argv[1], out=sys.argv[2], stages=['quality', 'video'], "
    "gates=False)); print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
)


def clips(folder: Path, n: int) -> None:
    import numpy as np
    from PIL import Image

    from clipaudit.data.video import encode_video

    folder.mkdir(parents=True)
    ramp = np.linspace(0, 255, 1920, dtype=np.uint8)[None, :, None].repeat(1080, 0).repeat(3, 2)
    for i in range(n):
        frames = []
        for k in range(24):
            a = ramp.copy()
            x = 100 + 20 * k + 7 * i
            a[300:700, x : x + 400] = (250, 60, (40 * i) % 255)
            frames.append(Image.fromarray(a))
        (folder / f"c{i:03d}.mp4").write_bytes(encode_video(frames, fps=8))
        (folder / f"c{i:03d}.txt").write_text(f"an orange block moving, clip {i}")


def peak_mib(src: Path, data: Path, out: Path) -> tuple[float, float]:
    t = time.perf_counter()
    got = subprocess.run(
        [sys.executable, "-c", CHILD, str(data), str(out)],
        env={"PYTHONPATH": str(src), "PATH": "/usr/bin:/bin"},
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    return round(int(got.stdout.split()[-1]) / 1024, 1), round(time.perf_counter() - t, 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", required=True)
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "video_memory.json")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        clips(t / "data", a.n)
        subprocess.run(["git", "worktree", "add", "--detach", str(t / "before"), a.before],
                       cwd=ROOT, check=True, capture_output=True)  # fmt: skip
        try:
            before = peak_mib(t / "before" / "src", t / "data", t / "run-before")
            now = peak_mib(ROOT / "src", t / "data", t / "run-now")
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(t / "before")],
                           cwd=ROOT, check=True, capture_output=True)  # fmt: skip
    res = {
        "what": __doc__.splitlines()[0],
        "clips": a.n,
        "clip": "3 s, 8 fps, 1920 x 1080, H.264; sampled uniform:8",
        "before": {"commit": a.before, "peak_rss_mib": before[0], "wall_s": before[1]},
        "now": {"peak_rss_mib": now[0], "wall_s": now[1]},
        "machine": f"{platform.machine()}, Python {platform.python_version()}",
    }
    print(json.dumps(res, indent=1))
    a.out.write_text(json.dumps(res, indent=1) + "\n")


if __name__ == "__main__":
    main()
