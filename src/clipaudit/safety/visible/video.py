"""Visible watermarks in video: frame scores aggregated over time, and the video threshold.

A video's score (``aggregate``) is the best mean logit of the detector over ``WINDOW``
consecutive sampled frames, as a probability. A broadcaster's or stock site's mark stays on
screen for many frames, so it scores about as a single frame would; a false alarm on one
frame (a sign passing by, a caption-like texture) is averaged with its neighbours. A mark on
fewer than ``WINDOW`` sampled frames is diluted: the honest cost of asking for persistence.

The frames a curate run scores are small (a 128-px clip, a 360p stream squashed to the
detector's 320 px input), decoded from a lossy stream, and correlated, so the image threshold
does not carry over. ``calibrate`` films real photographs with a moving camera (a pan with a
slow zoom, or a still tripod shot), encodes each clip as H.264, decodes it the way curate does
and takes the 1% and 5% false-positive thresholds from clean clips of the *tune* part of the
photos (those already carrying a mark left out). It then measures the held-out part: clean
clips, and clips whose mark (held-out fonts, words and logos) appears a third of the way in
or covers the whole clip. ``python -m clipaudit.safety.visible.video --photos DIR`` writes the
record to the detector's folder (``video_metrics.json``); the packs' ``video_threshold``
values come from it.
"""

from __future__ import annotations

import argparse
import json
import math
import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

WINDOW = 3
FRAMES = 24  # frames of a calibration clip (3 s at 8 fps, as the world's clips)
FPS = 8
SIZE = 160  # calibration clips are filmed at the detector's input size


def aggregate(scores: Sequence[float] | np.ndarray, window: int = WINDOW) -> float:
    """A video's watermark score from its sampled frames' scores, in time order."""
    s = np.clip(np.asarray(scores, np.float64), 1e-7, 1 - 1e-7)
    if s.size == 0:
        raise ValueError("a video score needs at least one frame score")
    logit = np.log(s / (1 - s))
    w = min(window, s.size)
    means = np.convolve(logit, np.ones(w) / w, mode="valid")
    return float(1 / (1 + math.exp(-float(means.max()))))


def film(photo: Image.Image, rng: random.Random, size: int = SIZE) -> list[Image.Image]:
    """``FRAMES`` frames of ``photo`` as a camera would film it: most clips pan along the
    longer side with a slow zoom in or out; one in five is a tripod shot with a little shake."""
    w, h = photo.size
    scale = size * 1.3 / min(w, h)
    big = photo.convert("RGB").resize(
        (max(size + 2, round(w * scale)), max(size + 2, round(h * scale))),
        Image.Resampling.BILINEAR,
    )
    bw, bh = big.size
    tripod = rng.random() < 0.2
    speed = 0.0 if tripod else rng.uniform(0.4, 1.0)
    zoom = rng.uniform(-0.12, 0.12)
    along_x = bw - size >= bh - size
    x0, y0 = rng.uniform(0, bw - size), rng.uniform(0, bh - size)
    direction = rng.choice((-1, 1))
    frames = []
    for k in range(FRAMES):
        t = k / (FRAMES - 1)
        side = size * (1 - abs(zoom) * (t if zoom > 0 else 1 - t))
        shift = direction * speed * t * ((bw if along_x else bh) - size)
        jx, jy = (rng.uniform(-1, 1), rng.uniform(-1, 1)) if tripod else (0.0, 0.0)
        cx = min(max(x0 + (shift if along_x else 0) + jx, 0), bw - size) + size / 2
        cy = min(max(y0 + (0 if along_x else shift) + jy, 0), bh - size) + size / 2
        box = (cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2)
        frames.append(big.resize((size, size), Image.Resampling.BILINEAR, box=box))
    return frames


def video_score(
    frames: list[Image.Image],
    score: Callable[[np.ndarray], np.ndarray],
    prepare: Callable[[Image.Image], np.ndarray],
) -> float:
    """Encode ``frames`` as H.264, decode them as curate does, ``prepare`` each frame as the
    detector's input and score the clip."""
    from clipaudit.data.video import decode_video, encode_video

    v = decode_video(encode_video(frames, FPS))
    if v.error is not None:
        raise RuntimeError(f"a calibration clip did not decode: {v.error} {v.detail}")
    return aggregate(score(np.stack([prepare(f) for f in v.frames])))


def calibrate(folder: Path, n: int = 600, seed: int = 0) -> dict[str, Any]:
    """Video thresholds from clean clips of tune photos; rates on clips of held-out photos."""
    from clipaudit.calibrate.intervals import wilson
    from clipaudit.safety.visible.data import load_photos
    from clipaudit.safety.visible.detector import load_detector
    from clipaudit.safety.visible.marks import apply_overlay, draw_overlay
    from clipaudit.safety.visible.train import auroc, marked_photos, threshold_at

    det = load_detector()

    def score(x: np.ndarray) -> np.ndarray:
        return det.score_arrays(x, batch_size=64)

    skip = marked_photos()
    rng = random.Random(f"visible-video:{seed}")

    def pick(part: str) -> list[Image.Image]:
        photos = load_photos(folder, part, max_side=400, skip=skip)  # type: ignore[arg-type]
        names = sorted(photos)
        rng.shuffle(names)
        return [photos[k] for k in names[:n]]

    tune = np.array([video_score(film(p, rng), score, det.to_input) for p in pick("tune")])
    thresholds = {f"fpr_{f}": round(threshold_at(tune, f), 6) for f in (0.01, 0.05)}
    clean: list[float] = []
    marked: dict[str, list[float]] = {"from_a_third": [], "whole_clip": []}
    for k, p in enumerate(pick("held_out")):
        frames = film(p, rng)
        clean.append(video_score(frames, score, det.to_input))
        ov = draw_overlay(rng, "heldout")
        start = FRAMES // 3 if k % 2 == 0 else 0
        # The same overlay at the same place on every frame from ``start`` on: screen space.
        frames = frames[:start] + [
            apply_overlay(f, ov, random.Random(f"{seed}:{k}")) for f in frames[start:]
        ]
        how = "from_a_third" if start else "whole_clip"
        marked[how].append(video_score(frames, score, det.to_input))
    c = np.array(clean)
    out: dict[str, Any] = {
        "what": "clips filmed from real photographs (pan with zoom, or tripod), H.264, "
        "decoded and sampled uniform:8 as curate does; score = best mean logit over "
        f"{WINDOW} consecutive frames",
        "command": "python -m clipaudit.safety.visible.video --photos PHOTOS "
        f"--n {n} --seed {seed}",
        "clip": {"frames": FRAMES, "fps": FPS, "size": SIZE},
        "thresholds": thresholds,
        "tune_clean_clips": len(tune),
        "heldout": {"clean_clips": len(c)},
    }
    for name, thr in thresholds.items():
        fp = int((c >= thr).sum())
        row: dict[str, Any] = {
            "threshold": thr,
            "fpr": round(fp / len(c), 4),
            "fpr_ci95": wilson(fp, len(c)),
        }
        for how, s in marked.items():
            tp = int((np.array(s) >= thr).sum())
            row[f"tpr_{how}"] = round(tp / len(s), 4)
            row[f"tpr_{how}_ci95"] = wilson(tp, len(s))
        out["heldout"][name] = row
    out["heldout"]["auroc"] = {how: round(auroc(c, np.array(s)), 4) for how, s in marked.items()}
    return out


def main(argv: list[str] | None = None) -> None:
    from clipaudit.safety.visible.detector import BUNDLED_DIR

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--photos", required=True, help="a folder of real photographs")
    ap.add_argument("--n", type=int, default=600, help="clips per part (tune, held out)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(Path(BUNDLED_DIR) / "video_metrics.json"))
    a = ap.parse_args(argv)
    rec = calibrate(Path(a.photos), a.n, a.seed)
    Path(a.out).write_text(json.dumps(rec, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(rec["thresholds"]), json.dumps(rec["heldout"]))


if __name__ == "__main__":
    main()
