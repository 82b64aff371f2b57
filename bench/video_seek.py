"""Frame sampling by seeking against decoding on: the decoder of this tree beside the one of an
earlier commit (``--before``), on clips made with the ffmpeg tool (Debian's, with libx265).

    python bench/video_seek.py --before a6099af

Four clips: 10 s of 4K 10-bit HEVC with x265's default groups of pictures (a key frame every
250 frames, 8.3 s), 15 s of 4K H.264 with a key frame a second, and 60 s of 1080p H.264 with a
key frame a second and with x264's default 250 frames (both over 600 declared frames, so even
``uniform`` seeks). Each policy once per decoder, same
bytes; the sampled times must agree. Writes bench/results/video_seek.json.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CLIPS = {
    "hevc10_4k_10s_gop250": "testsrc2=size=3840x2160:rate=30:duration=10 -c:v libx265 -preset "
    "ultrafast -x265-params log-level=error -pix_fmt yuv420p10le -tag:v hvc1",
    "h264_4k_15s_gop30": "testsrc2=size=3840x2160:rate=30:duration=15 -c:v libx264 -preset "
    "ultrafast -g 30 -pix_fmt yuv420p",
    "h264_1080p_60s_gop30": "testsrc2=size=1920x1080:rate=30:duration=60 -c:v libx264 -preset "
    "ultrafast -g 30 -pix_fmt yuv420p",
    "h264_1080p_60s_gop250": "testsrc2=size=1920x1080:rate=30:duration=60 -c:v libx264 -preset "
    "ultrafast -pix_fmt yuv420p",
}
POLICIES = ("uniform:8", "uniform:32", "fps:1", "fps:4")


def module_at(rev: str, tmp: Path) -> ModuleType:
    """``clipaudit.data.video`` as it was at ``rev``."""
    src = subprocess.run(
        ["git", "show", f"{rev}:src/clipaudit/data/video.py"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    path = tmp / "video_before.py"
    path.write_text(src)
    spec = importlib.util.spec_from_file_location("video_before", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["video_before"] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", required=True, help="the commit whose decoder to compare with")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "video_seek.json")
    a = ap.parse_args()
    from clipaudit.data import video as now

    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        before = module_at(a.before, Path(tmp))
        for name, spec in CLIPS.items():
            clip = Path(tmp) / f"{name}.mp4"
            src, _, enc = spec.partition(" ")
            subprocess.run(
                [
                    "ffmpeg",
                    "-y",
                    "-loglevel",
                    "error",
                    "-f",
                    "lavfi",
                    "-i",
                    src,
                    *enc.split(),
                    str(clip),
                ],
                check=True,
            )
            data = clip.read_bytes()
            for policy in POLICIES:
                got: dict[str, Any] = {}
                for label, mod in (("before", before), ("now", now)):
                    t = time.perf_counter()
                    v = mod.decode_video(data, mod.SamplingPolicy.parse(policy))
                    got[label] = {
                        "error": v.error,
                        "frames": len(v.frames),
                        "seconds": round(time.perf_counter() - t, 2),
                        "times": v.times,
                    }
                # None where the earlier decoder gave no frames to compare (a timeout)
                same = (
                    got["before"]["times"] == got["now"]["times"]
                    if got["before"]["times"]
                    else None
                )
                row = {
                    "clip": name,
                    "policy": policy,
                    "same_times": same,
                    **{k: {x: y for x, y in g.items() if x != "times"} for k, g in got.items()},
                }
                rows.append(row)
                print(json.dumps(row), flush=True)
    out = {
        "what": __doc__.splitlines()[0],
        "before": a.before,
        "deadline_s": now.DEADLINE_S,
        "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}, Python "
        f"{platform.python_version()}",
        "rows": rows,
    }
    a.out.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
