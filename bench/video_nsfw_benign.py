"""Benign real photographs filmed as clips: how many does the default pack drop as NSFW, where
a clip takes each nudenet class at its worst sampled frame (the nsfw stage's video rule)?

    python bench/video_nsfw_benign.py --photos ../shared/photos [--n 2097]
        [--calibrate 1500 [--write-thresholds]]

The image thresholds (``safety/nsfw_thresholds.json``) were chosen on benign photos of the
calibration part (0 of the held-out photos dropped). A clip is eight looks at one scene,
re-framed, re-encoded and upscaled, so its worst frame may score past a threshold the photo
itself stays under. Clips film held-out photos with the visible-watermark calibration's
camera (a pan with a slow zoom, or a tripod shot; ``safety.visible.video.film``) at 320 px,
are encoded as H.264, decoded and sampled as curate does (``uniform:8``) and every sampled
frame is read by nudenet; the photo alone is read too. Writes
bench/results/video_nsfw_benign.json.

``--calibrate N`` first films N photos of the calibration part (another camera seed) and
chooses the clip thresholds by the photos' rule (per class: the highest benign clip score
+ 0.1, up to the 0.05 grid, never below the photo's threshold; past 1.0 the class does not
drop clips, its review band still flags them); the held-out clips are then judged by both
the photo and the clip thresholds. ``--write-thresholds`` writes the clip thresholds into
the package (``safety/nsfw_thresholds.json`` → ``video_classes``).
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import random
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SIZE = 320  # nudenet's input side


def film_rows(paths: list[Path], root: Path, rng: random.Random, det: Any) -> list[dict[str, Any]]:
    """Each photo filmed as a clip: its classes' worst scores over the sampled frames, and
    the photo's own scores."""
    from clipaudit.data.decode import decode_image
    from clipaudit.data.video import decode_video, encode_video
    from clipaudit.safety.visible.video import FPS, film

    rows: list[dict[str, Any]] = []
    for path in paths:
        photo = decode_image(path.read_bytes())
        if photo.image is None:
            continue
        v = decode_video(encode_video(film(photo.image, rng, SIZE), FPS))
        if v.error is not None:
            sys.exit(f"a clip of {path.name} did not decode: {v.error} {v.detail}")
        worst: dict[str, float] = {}
        for frame in v.frames:
            for c, sc in det.scores(frame).items():
                worst[c] = max(worst.get(c, 0.0), sc)
        rows.append(
            {"photo": str(path.relative_to(root)), "worst": worst, "alone": det.scores(photo.image)}
        )
    return rows


def clip_thresholds(
    rows: list[dict[str, Any]], photo: dict[str, float], margin: float = 0.1
) -> dict[str, float | None]:
    """Per class: the highest benign clip score + margin, up to the 0.05 grid, at least the
    photo threshold; None where that passes 1.0 (no score can reach it)."""
    out: dict[str, float | None] = {}
    for c, floor in photo.items():
        top = max((r["worst"].get(c, 0.0) for r in rows), default=0.0)
        t = max(floor, math.ceil(round((top + margin) / 0.05, 6)) * 0.05)
        out[c] = None if t > 1.0 + 1e-9 else round(t, 2)
    return out


def judged(rows: list[dict[str, Any]], thresholds: Mapping[str, float | None]) -> dict[str, Any]:
    from clipaudit.calibrate.intervals import wilson

    def hits(scores: dict[str, float]) -> list[str]:
        return sorted(c for c, t in thresholds.items() if t is not None and scores.get(c, 0) >= t)

    dropped = [
        {"photo": r["photo"], "by": hits(r["worst"]), "worst": r["worst"]}
        for r in rows
        if hits(r["worst"])
    ]
    n = len(rows)
    return {
        "thresholds": thresholds,
        "clips_dropped": len(dropped),
        "clips_dropped_rate": round(len(dropped) / max(n, 1), 4),
        "clips_dropped_ci95": wilson(len(dropped), n),
        "dropped": dropped,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photos", type=Path, default=ROOT.parent / "shared" / "photos")
    ap.add_argument("--n", type=int, default=2097, help="held-out photos to film")
    ap.add_argument("--calibrate", type=int, default=0, help="calibration photos to film")
    ap.add_argument("--write-thresholds", action="store_true")
    ap.add_argument(
        "--out", type=Path, default=ROOT / "bench" / "results" / "video_nsfw_benign.json"
    )
    a = ap.parse_args()
    if not a.photos.is_dir():
        sys.exit(f"--photos {a.photos} is not a folder: give the folder of real photographs")
    if a.write_thresholds and not a.calibrate:
        sys.exit("--write-thresholds writes the thresholds --calibrate N chooses: give N")
    from clipaudit.calibrate.photo_split import photos
    from clipaudit.safety.nsfw_thresholds import calibrated_classes
    from clipaudit.safety.nudity import NudeNet

    photo_t = {c: t for c, t in calibrated_classes().items() if t is not None}
    det = NudeNet(threads=2)
    t0 = time.time()
    res: dict[str, Any] = {"what": __doc__.splitlines()[0]}
    clip_t: dict[str, float | None] | None = None
    if a.calibrate:
        cal = photos(a.photos, "calibration")
        crng = random.Random("video-nsfw-benign:calibration")
        cpick = sorted(crng.sample(range(len(cal)), min(a.calibrate, len(cal))))
        crow = film_rows([cal[i] for i in cpick], a.photos, crng, det)
        clip_t = clip_thresholds(crow, photo_t)
        res["calibration"] = {
            "clips": len(crow),
            "rule": "per class: max benign calibration clip score + 0.1, up to the 0.05 grid, "
            "at least the photo threshold; past 1.0 the class does not drop clips",
            "highest_clip_scores_by_class": {
                c: sorted((r["worst"].get(c, 0.0) for r in crow), reverse=True)[:5] for c in photo_t
            },
            "clip_thresholds": clip_t,
            "seconds": round(time.time() - t0, 1),
        }
    held = photos(a.photos, "held_out")
    rng = random.Random("video-nsfw-benign:0")
    pick = sorted(rng.sample(range(len(held)), min(a.n, len(held))))
    rows = film_rows([held[i] for i in pick], a.photos, rng, det)
    photo_judged = judged(rows, photo_t)
    res.update({
        "clips": len(rows),
        "frames_per_clip": "uniform:8 of a 3 s clip at 8 fps, 320 px",
        "photos_dropped": sum(
            any(r["alone"].get(c, 0) >= t for c, t in photo_t.items()) for r in rows
        ),
        "highest_clip_scores_by_class": {
            c: sorted((r["worst"].get(c, 0.0) for r in rows), reverse=True)[:5] for c in photo_t
        },
        "with_photo_thresholds": photo_judged,
    })  # fmt: skip
    if clip_t is not None:
        res["with_clip_thresholds"] = judged(rows, clip_t)
    res["seconds"] = round(time.time() - t0, 1)
    res["machine"] = f"{platform.machine()}, Python {platform.python_version()}"
    print(json.dumps(res, indent=1), flush=True)
    a.out.write_text(json.dumps(res, indent=1) + "\n")
    if a.write_thresholds and clip_t is not None:
        path = ROOT / "src" / "clipaudit" / "safety" / "nsfw_thresholds.json"
        shipped = json.loads(path.read_text())
        shipped["video_classes"] = clip_t
        shipped["video_calibrated_on"] = (
            f"{len(crow)} benign calibration photos filmed as 3 s clips, each class at its "
            "worst of uniform:8 frames"
        )
        shipped["video_rule"] = res["calibration"]["rule"]
        shipped["video_held_out_clips"] = len(rows)
        shipped["video_held_out_dropped"] = res["with_clip_thresholds"]["clips_dropped"]
        path.write_text(json.dumps(shipped, indent=1) + "\n")
        print(f"wrote the clip thresholds into {path}")


if __name__ == "__main__":
    main()
