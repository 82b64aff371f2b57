"""Near-duplicate precision on a family of distinct product shots on white (no copies among
them), with real photos and their 90% crops beside them.

Every shot is one flat-coloured object (a rounded box, an ellipse or a bottle with a neck;
random colour, size, offset, label bands, a soft shadow) on a near-white 256-px ground, JPEG
q85: a catalogue's look-alike family. Trimmed to its object, each shot's inner thumbnail is
the object squeezed square, and per-channel correlation ignores hue, so distinct shots are
confirmed as copies. Beside them: ``--photos`` Caltech-101 photos from shared/photos and a
90% crop (top-left) of the first ``--crops`` of them, the copies that must still be found.

The pool is curated once (``--stages quality,hashes``); the decide is run three times on
the same signals, with the run's own confirmed pairs counted in process:

- ``no_aspect_check``: ``keeper.MAX_INNER_ASPECT`` = inf and no hue check (what decide did
  before either);
- ``no_hue_check``: the aspect check, ``dedup.min_hue_overlap: null`` (before 2026-12-06);
- ``component`` and ``ball``: both checks, and the two ``dedup.groups`` modes.

Each row: confirmed pairs between distinct shots, crops found (crop in its photo's group),
shots dropped, the largest group, the decide's wall. Writes
bench/results/product_shots.json and prints it.

    python bench/product_shots.py [--shots 3000] [--photos 1000] [--crops 300]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image, ImageDraw, ImageFilter

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results" / "product_shots.json"


def product_shot(rng: random.Random, side: int = 256) -> bytes:
    """One flat-coloured object on a near-white ground, JPEG q85."""
    im = Image.new("RGB", (side, side), (250, 250, 250))
    cx, cy = side // 2 + rng.randint(-12, 12), side // 2 + rng.randint(-12, 12)
    w, h = rng.randint(60, 150), rng.randint(60, 170)
    colour = tuple(rng.randint(0, 230) for _ in range(3))
    shadow = Image.new("L", (side, side), 0)
    ImageDraw.Draw(shadow).ellipse(
        (cx - w // 2, cy + h // 2 - 8, cx + w // 2, cy + h // 2 + 8), fill=90
    )
    im.paste((200, 200, 200), mask=shadow.filter(ImageFilter.GaussianBlur(6)))
    d = ImageDraw.Draw(im)
    box = (cx - w // 2, cy - h // 2, cx + w // 2, cy + h // 2)
    kind = rng.randint(0, 2)
    if kind == 0:
        d.rounded_rectangle(box, radius=rng.randint(4, 30), fill=colour)
    elif kind == 1:
        d.ellipse(box, fill=colour)
    else:  # a bottle: a neck on a rounded body
        d.rectangle((cx - w // 6, cy - h // 2, cx + w // 6, cy - h // 3), fill=colour)
        d.rounded_rectangle((cx - w // 2, cy - h // 3, cx + w // 2, cy + h // 2), 12, fill=colour)
    for _ in range(rng.randint(0, 3)):  # label bands
        y = rng.randint(cy - h // 4, cy + h // 4)
        band = tuple(rng.randint(0, 255) for _ in range(3))
        d.rectangle((cx - w // 3, y, cx + w // 3, y + rng.randint(4, 16)), fill=band)
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=85)
    return buf.getvalue()


def pool(shots: int, photos: Path, n_photos: int, crops: int, out: Path) -> None:
    rng = random.Random(7)
    ids, images = [], []
    for i in range(shots):
        ids.append(f"p{i:05d}")
        images.append(product_shot(rng))
    files = sorted((photos / "caltech101").rglob("*.jpg"))
    rng.shuffle(files)
    for j, f in enumerate(files[:n_photos]):
        data = f.read_bytes()
        ids.append(f"r{j:05d}")
        images.append(data)
        if j < crops:
            im = Image.open(io.BytesIO(data)).convert("RGB")
            buf = io.BytesIO()
            im.crop((0, 0, int(im.width * 0.9), int(im.height * 0.9))).save(buf, "JPEG", quality=90)
            ids.append(f"c{j:05d}")
            images.append(buf.getvalue())
    out.mkdir(parents=True)
    caps = [f"a catalogue photo number {k}" for k in range(len(ids))]
    pq.write_table(pa.table({"id": ids, "image": images, "caption": caps}), out / "0.parquet")


def score(run: Path) -> dict[str, Any]:
    dec = pq.read_table(run / "decisions.parquet", columns=["id", "duplicate_of"]).to_pylist()
    keeper = {r["id"]: r["duplicate_of"] for r in dec}
    groups: dict[str, set[str]] = {}
    for i, k in keeper.items():
        groups.setdefault(k or i, set()).add(i)
    crops = [i for i in keeper if i.startswith("c")]
    found = sum((keeper[c] or c) == (keeper["r" + c[1:]] or "r" + c[1:]) for c in crops)
    return {
        "shots_dropped": sum(1 for i, k in keeper.items() if i.startswith("p") and k),
        "largest_group": max(len(g) for g in groups.values()),
        "crops_found": found,
        "crops": len(crops),
    }


def confirmed_shot_pairs(run: Path, groups: str, hue: bool) -> int:
    from clipaudit.curate.decide.run import load_signals, near_duplicate_pairs
    from clipaudit.curate.rundir import RunDir
    from clipaudit.rules.schema import load_pack

    sig = load_signals(RunDir(run))
    d = load_pack("default").dedup
    hue_overlap = d.min_hue_overlap if hue else None
    d = d.model_copy(update={"groups": groups, "min_hue_overlap": hue_overlap})
    ids = sig["id"]
    pairs = near_duplicate_pairs(sig, np.arange(len(ids)), d)
    return sum(1 for a, b in pairs if ids[a][0] == "p" and ids[b][0] == "p")


def decide(run: Path, groups: str, aspect: bool, hue: bool = True) -> dict[str, Any]:
    from clipaudit.curate.decide import decide_run
    from clipaudit.curate.decide import keeper as kp

    pack = run.parent / f"{groups}.yaml"
    no_hue = "" if hue else "  min_hue_overlap: null\n"
    pack.write_text(f"name: {groups}\nextends: default\ndedup:\n  groups: {groups}\n{no_hue}")
    before = kp.MAX_INNER_ASPECT
    kp.MAX_INNER_ASPECT = before if aspect else float("inf")
    try:
        t = time.perf_counter()
        stats = decide_run(run, str(pack), write_kept=False, gates=False)
        wall = time.perf_counter() - t
        pairs = confirmed_shot_pairs(run, groups, hue)
    finally:
        kp.MAX_INNER_ASPECT = before
    return {
        **score(run),
        "confirmed_pairs_between_shots": pairs,
        "aspect_rejected": stats["duplicate_search"].get("aspect_rejected", 0),
        "hue_rejected": stats["duplicate_search"].get("hue_rejected", 0),
        "decide_wall_s": round(wall, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shots", type=int, default=3000)
    ap.add_argument("--photos", type=int, default=1000)
    ap.add_argument("--crops", type=int, default=300)
    ap.add_argument("--photo-dir", type=Path, default=ROOT.parent / "shared" / "photos")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT / "src"))
    from clipaudit.curate.pipeline import CurateConfig, curate

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        pool(args.shots, args.photo_dir, args.photos, args.crops, work / "data")
        run = work / "run"
        cfg = CurateConfig(str(work / "data"), str(run), stages=["quality", "hashes"])
        curate(CurateConfig(**{**cfg.__dict__, "decide": False}))
        out: dict[str, Any] = {
            "pool": {"shots": args.shots, "photos": args.photos, "crops": args.crops},
            "no_aspect_check": decide(run, "component", aspect=False, hue=False),
            "no_hue_check": decide(run, "component", aspect=True, hue=False),
            "component": decide(run, "component", aspect=True),
            "ball": decide(run, "ball", aspect=True),
            "machine": (
                f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
            ),
        }
    RESULTS.write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
