"""Video decoding and curation throughput on the world's video pool.

* **Full decode**: every frame of every clip, with PyAV (FFmpeg's libraries in its wheel)
  and with the ``ffmpeg`` command line decoding the same files to a null sink (Debian's
  ``ffmpeg``: ``apt-get install ffmpeg``; recorded as missing when it is not there), in
  frames per second; the command line pays a process start per file, so it is also run on
  one concatenated file list.
* **Sampling**: the default policy (``uniform:8``: seek, decode to the target) in clips
  and sampled frames per second.
* **End to end**: ``curate`` with the video demo's stages and the bundled model, clips per
  second (model load included).

Writes bench/results/video_throughput.json.

    python bench/video_throughput.py [--n 200]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any


def main() -> None:
    import av

    from clipaudit.curate.pipeline import CurateConfig, curate
    from clipaudit.data.formats import open_dataset
    from clipaudit.data.video import decode_video
    from clipaudit.demo.video import VIDEO_STAGES
    from clipaudit.world.video import FPS, FRAMES, VideoPoolConfig, write_video_world

    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="clipaudit-video-bench-"))
    out: dict[str, Any] = {
        "command": f"python bench/video_throughput.py --n {args.n}",
        "pool": f"world video pool, {args.n} clips of {FRAMES} frames at {FPS} fps, 128 px, H.264",
    }
    try:
        write_video_world(tmp / "pool", VideoPoolConfig(n=args.n, seed=7))
        ds = open_dataset(str(tmp / "pool" / "data"))
        clips = [s.image or b"" for sh in ds.shards() for s in ds.read_shard(sh)]
        files = []
        for k, data in enumerate(clips):
            f = tmp / f"c{k:05d}.mp4"
            f.write_bytes(data)
            files.append(f)
        t0 = time.perf_counter()
        frames = 0
        for f in files:
            with av.open(str(f)) as c:
                frames += sum(1 for _ in c.decode(video=0))
        pyav_s = time.perf_counter() - t0
        out["full_decode"] = {
            "frames": frames,
            "pyav_frames_per_s": round(frames / pyav_s, 1),
        }
        ffmpeg = shutil.which("ffmpeg")
        if ffmpeg:
            t0 = time.perf_counter()
            for f in files:
                subprocess.run([ffmpeg, "-v", "error", "-i", str(f), "-f", "null", "-"], check=True)
            per_file = time.perf_counter() - t0
            listing = tmp / "list.txt"
            listing.write_text("".join(f"file '{f}'\n" for f in files))
            t0 = time.perf_counter()
            subprocess.run(
                [
                    ffmpeg,
                    "-v",
                    "error",
                    "-f",
                    "concat",
                    "-safe",
                    "0",
                    "-i",
                    str(listing),
                    "-f",
                    "null",
                    "-",
                ],
                check=True,
            )
            one_run = time.perf_counter() - t0
            out["full_decode"]["ffmpeg_cli_frames_per_s_one_process_per_file"] = round(
                frames / per_file, 1
            )
            out["full_decode"]["ffmpeg_cli_frames_per_s_one_process"] = round(frames / one_run, 1)
            out["full_decode"]["pyav_vs_ffmpeg_one_process"] = round(one_run / pyav_s, 3)
        else:
            out["full_decode"]["ffmpeg_cli"] = "not installed (apt-get install ffmpeg)"
        t0 = time.perf_counter()
        sampled = sum(len(decode_video(c).frames) for c in clips)
        s = time.perf_counter() - t0
        out["sampling_uniform_8"] = {
            "clips_per_s": round(len(clips) / s, 1),
            "sampled_frames_per_s": round(sampled / s, 1),
        }
        t0 = time.perf_counter()
        curate(
            CurateConfig(
                dataset=str(tmp / "pool" / "data"),
                out=str(tmp / "run"),
                stages=VIDEO_STAGES,
                model="bundled:world-clip",
                gates=False,
            )
        )
        e2e = time.perf_counter() - t0
        out["end_to_end"] = {
            "stages": VIDEO_STAGES,
            "seconds": round(e2e, 1),
            "clips_per_s": round(len(clips) / e2e, 1),
        }
        out["machine"] = {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "pyav": av.__version__,
            "loadavg": os.getloadavg(),
        }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    path = Path(__file__).parent / "results" / "video_throughput.json"
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
