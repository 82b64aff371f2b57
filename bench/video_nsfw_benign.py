"""Benign real photographs filmed as clips: how many does the default pack drop as NSFW, where
a clip takes each nudenet class at its worst sampled frame (the nsfw stage's video rule)?

    python bench/video_nsfw_benign.py --photos ../shared/photos [--n 600]

The image thresholds (``safety/nsfw_thresholds.json``) were chosen on benign photos of the
calibration part (0 of the held-out photos dropped). A clip is eight looks at one scene,
re-framed, re-encoded and upscaled, so its worst frame may score past a threshold the photo
itself stays under. Clips film held-out photos with the visible-watermark calibration's
camera (a pan with a slow zoom, or a tripod shot; ``safety.visible.video.film``) at 320 px,
are encoded as H.264, decoded and sampled as curate does (``uniform:8``) and every sampled
frame is read by nudenet; the photo alone is read too. Writes
bench/results/video_nsfw_benign.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SIZE = 320  # nudenet's input side


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photos", type=Path, default=ROOT.parent / "shared" / "photos")
    ap.add_argument("--n", type=int, default=600, help="held-out photos to film")
    ap.add_argument(
        "--out", type=Path, default=ROOT / "bench" / "results" / "video_nsfw_benign.json"
    )
    a = ap.parse_args()
    if not a.photos.is_dir():
        sys.exit(f"--photos {a.photos} is not a folder: give the folder of real photographs")
    from clipaudit.calibrate.intervals import wilson
    from clipaudit.calibrate.photo_split import photos
    from clipaudit.data.decode import decode_image
    from clipaudit.data.video import decode_video, encode_video
    from clipaudit.safety.nsfw_thresholds import calibrated_classes
    from clipaudit.safety.nudity import NudeNet
    from clipaudit.safety.visible.video import FPS, film

    thresholds = {c: t for c, t in calibrated_classes().items() if t is not None}
    held = photos(a.photos, "held_out")
    rng = random.Random("video-nsfw-benign:0")
    pick = sorted(rng.sample(range(len(held)), min(a.n, len(held))))
    det = NudeNet(threads=2)
    t0 = time.time()
    rows: list[dict[str, Any]] = []
    for i in pick:
        path = held[i]
        photo = decode_image(path.read_bytes())
        if photo.image is None:
            continue
        v = decode_video(encode_video(film(photo.image, rng, SIZE), FPS))
        if v.error is not None:
            sys.exit(f"a clip of {path.name} did not decode: {v.error} {v.detail}")
        worst: dict[str, float] = {}
        for frame in v.frames:
            for c, s in det.scores(frame).items():
                worst[c] = max(worst.get(c, 0.0), s)
        alone = det.scores(photo.image)
        rows.append({
            "photo": str(path.relative_to(a.photos)),
            "clip_dropped_by": sorted(c for c, t in thresholds.items() if worst.get(c, 0.0) >= t),
            "photo_dropped_by": sorted(c for c, t in thresholds.items() if alone.get(c, 0.0) >= t),
            "clip_worst": {c: worst[c] for c in thresholds if c in worst},
        })  # fmt: skip
    n = len(rows)
    clips = sum(bool(r["clip_dropped_by"]) for r in rows)
    photos_dropped = sum(bool(r["photo_dropped_by"]) for r in rows)
    top = {
        c: sorted((r["clip_worst"].get(c, 0.0) for r in rows), reverse=True)[:5] for c in thresholds
    }
    res = {
        "what": __doc__.splitlines()[0],
        "clips": n,
        "frames_per_clip": "uniform:8 of a 3 s clip at 8 fps, 320 px",
        "thresholds": thresholds,
        "clips_dropped": clips,
        "clips_dropped_rate": round(clips / max(n, 1), 4),
        "clips_dropped_ci95": wilson(clips, n),
        "photos_dropped": photos_dropped,
        "highest_clip_scores_by_class": top,
        "dropped": [r for r in rows if r["clip_dropped_by"] or r["photo_dropped_by"]],
        "seconds": round(time.time() - t0, 1),
        "machine": f"{platform.machine()}, Python {platform.python_version()}",
    }
    print(json.dumps({k: v for k, v in res.items() if k != "dropped"}, indent=1), flush=True)
    a.out.write_text(json.dumps(res, indent=1) + "\n")


if __name__ == "__main__":
    main()
