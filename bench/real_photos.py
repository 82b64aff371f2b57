"""Detectors and thresholds measured on real photographs (``../shared/photos`` or any folder).

Every photo is in one fixed part (``clipaudit.calibrate.photo_split``): thresholds are chosen
on the calibration part only and every figure reported is on the held-out part.

    python bench/real_photos.py --photos ../shared/photos --nsfw [--write-thresholds]

``--nsfw``: nudenet's per-class max scores for every photo (cached under ``--cache``, so a
threshold change does not rescore), the per-class drop thresholds chosen on the benign
calibration photos, and the share of benign held-out photos dropped under the old and the
new thresholds. ``--write-thresholds`` writes the chosen thresholds into the package
(``clipaudit/safety/nsfw_thresholds.json``), where the default pack reads them.

Results: ``bench/results/real_photos.json`` (sections are merged, so runs can be partial).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from clipaudit.calibrate.photo_split import part_of, photos  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "real_photos.json"
THRESHOLDS = ROOT / "src" / "clipaudit" / "safety" / "nsfw_thresholds.json"


def nsfw_scores(folder: Path, cache: Path) -> dict[str, dict[str, float]]:
    """Relative path → nudenet's max score per class, for every photo (cached)."""
    from PIL import Image

    from clipaudit.data.decode import decode_image
    from clipaudit.safety.nudity import NudeNet

    cache.mkdir(parents=True, exist_ok=True)
    path = cache / "nsfw_scores.json"
    done: dict[str, dict[str, float]] = json.loads(path.read_text()) if path.is_file() else {}
    todo = [p for p in photos(folder) if p.relative_to(folder).as_posix() not in done]
    det = NudeNet(threads=1)

    def score(p: Path) -> tuple[str, dict[str, float]]:
        decoded = decode_image(p.read_bytes())
        im: Image.Image | None = decoded.image
        return p.relative_to(folder).as_posix(), det.scores(im) if im is not None else {}

    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        for k, (rel, s) in enumerate(pool.map(score, todo), 1):
            done[rel] = s
            if k % 500 == 0:
                print(f"nsfw: {k}/{len(todo)} in {time.perf_counter() - t0:.0f} s", flush=True)
                path.write_text(json.dumps(done))
    path.write_text(json.dumps(done))
    return done


def _ceil_step(x: float, step: float = 0.05) -> float:
    return round(math.ceil(round(x / step, 6)) * step, 2)


def choose_thresholds(
    scores: dict[str, dict[str, float]], classes: list[str], floor: float, margin: float
) -> dict[str, float]:
    """Per class, the smallest threshold on a 0.05 grid, at least ``floor``, above every
    benign calibration photo's score by ``margin``: no benign calibration photo is dropped,
    and the margin is the room left for photos not seen."""
    out = {}
    for c in classes:
        top = max((s.get(c, 0.0) for s in scores.values()), default=0.0)
        out[c] = max(floor, _ceil_step(top + margin))
    return out


def dropped(scores: dict[str, dict[str, float]], thresholds: dict[str, float]) -> list[str]:
    return sorted(
        rel
        for rel, s in scores.items()
        if any(s.get(c, 0.0) >= t for c, t in thresholds.items() if t is not None)
    )


def wilson(k: int, n: int, z: float = 1.96) -> list[float]:
    """95% Wilson interval of a proportion k / n."""
    if n == 0:
        return [0.0, 1.0]
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return [round(max(0.0, c - h), 5), round(min(1.0, c + h), 5)]


def bench_nsfw(folder: Path, cache: Path, write: bool) -> dict[str, Any]:
    from clipaudit.safety.nudity import EXPOSED_CLASSES

    t0 = time.perf_counter()
    scores = nsfw_scores(folder, cache)
    wall = time.perf_counter() - t0
    parts: dict[str, dict[str, dict[str, float]]] = {"calibration": {}, "held_out": {}}
    for rel, s in scores.items():
        parts[part_of(rel)][rel] = s
    old = dict.fromkeys(EXPOSED_CLASSES, 0.5)
    new = choose_thresholds(parts["calibration"], list(EXPOSED_CLASSES), floor=0.5, margin=0.1)
    report: dict[str, Any] = {
        "what": "benign real photos dropped by nudenet's exposed classes (default route: drop)",
        "photos": {k: len(v) for k, v in parts.items()},
        "scoring_wall_s": round(wall, 1),
        "thresholds_old": old,
        "thresholds_chosen": new,
        "rule": "per class: max benign calibration score + 0.1, up to the 0.05 grid, floor 0.5",
        "calibration_max_score": {
            c: round(max((s.get(c, 0.0) for s in parts["calibration"].values()), default=0), 3)
            for c in EXPOSED_CLASSES
        },
    }
    for name, th in (("old", old), ("chosen", new)):
        for part, sc in parts.items():
            hit = dropped(sc, th)
            report[f"dropped_{name}_{part}"] = {
                "count": len(hit),
                "share": round(len(hit) / max(len(sc), 1), 5),
                "interval95": wilson(len(hit), len(sc)),
                "examples": hit[:15],
            }
    if write:
        THRESHOLDS.write_text(
            json.dumps(
                {
                    "classes": new,
                    "calibrated_on": f"{len(parts['calibration'])} benign real photos "
                    "(Caltech-101 and a clothing set, the calibration part of shared/photos)",
                    "rule": report["rule"],
                    "held_out_dropped": report["dropped_chosen_held_out"]["count"],
                    "held_out_photos": len(parts["held_out"]),
                },
                indent=1,
                sort_keys=True,
            )
            + "\n"
        )
    return report


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--photos", type=Path, default=ROOT.parent / "shared" / "photos")
    ap.add_argument("--cache", type=Path, default=Path("/tmp/clipaudit-real-photos"))
    ap.add_argument("--nsfw", action="store_true")
    ap.add_argument("--write-thresholds", action="store_true")
    args = ap.parse_args()
    results = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    if args.nsfw:
        results["nsfw"] = {**bench_nsfw(args.photos, args.cache, args.write_thresholds)}
        results["nsfw"]["machine"] = machine
        print(json.dumps({k: v for k, v in results["nsfw"].items() if "dropped" in k}, indent=1))
    RESULTS.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
