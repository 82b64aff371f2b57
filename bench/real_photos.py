"""Detectors and thresholds measured on real photographs (``../shared/photos`` or any folder).

Every photo is in one fixed part (``clipaudit.calibrate.photo_split``): thresholds are chosen
on the calibration part only and every figure reported is on the held-out part.

    python bench/real_photos.py --photos ../shared/photos --nsfw [--write-thresholds]
    python bench/real_photos.py --photos ../shared/photos --near [--distinct 1000 --varied 200]
    python bench/real_photos.py --photos ../shared/photos --visible

``--nsfw``: nudenet's per-class max scores for every photo (cached under ``--cache``, so a
threshold change does not rescore), the per-class drop thresholds chosen on the benign
calibration photos, and the share of benign held-out photos dropped under the old and the
new thresholds. ``--write-thresholds`` writes the chosen thresholds into the package
(``clipaudit/safety/nsfw_thresholds.json``), where the default pack reads them.

``--near``: ``--distinct`` held-out photos, and of ``--varied`` of them each variant below,
written as an image folder and curated end to end (``clipaudit curate --stages
quality,hashes``, default pack); recall per variant (the variant and its original end in one
duplicate group) and pair precision over every duplicate call. imagededup (PHash,
threshold 10) and cleanvision (near and exact duplicate issues) run on the same folder when
they are installed.

``--visible``: every held-out photo whole, clean and under one held-out-style mark, curated
end to end with the visible-watermark stage and the default pack; AUROC and the rates at the
pack's threshold with 95% intervals, by mark style and photo source.

Results: ``bench/results/real_photos.json`` (sections are merged, so runs can be partial).
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import platform
import shutil
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from clipaudit.calibrate import intervals  # noqa: E402
from clipaudit.calibrate.photo_split import part_of, photos  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "real_photos.json"
THRESHOLDS = ROOT / "src" / "clipaudit" / "safety" / "nsfw_thresholds.json"


# How a photo is shown to the detector: as stored, and as the same photo reaches a crawl in
# other forms (a grayscale copy turned a held baby alligator into an exposed anus at 0.62).
NSFW_VIEWS: dict[str, Any] = {
    "orig": lambda im: im,
    "gray": lambda im: im.convert("L").convert("RGB"),
    "jpeg40": lambda im: _jpeg_again(im, 40),
}


def _jpeg_again(im: Any, quality: int) -> Any:
    from PIL import Image

    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def nsfw_scores(folder: Path, cache: Path, view: str = "orig") -> dict[str, dict[str, float]]:
    """Relative path → nudenet's max score per class, for every photo in ``view`` (cached)."""
    from PIL import Image

    from clipaudit.data.decode import decode_image
    from clipaudit.safety.nudity import NudeNet

    cache.mkdir(parents=True, exist_ok=True)
    path = cache / ("nsfw_scores.json" if view == "orig" else f"nsfw_scores_{view}.json")
    show = NSFW_VIEWS[view]
    done: dict[str, dict[str, float]] = json.loads(path.read_text()) if path.is_file() else {}
    todo = [p for p in photos(folder) if p.relative_to(folder).as_posix() not in done]
    det = NudeNet(threads=1)

    def score(p: Path) -> tuple[str, dict[str, float]]:
        decoded = decode_image(p.read_bytes())
        im: Image.Image | None = decoded.image
        return p.relative_to(folder).as_posix(), det.scores(show(im)) if im is not None else {}

    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        for k, (rel, s) in enumerate(pool.map(score, todo), 1):
            done[rel] = s
            if k % 500 == 0:
                took = time.perf_counter() - t0
                print(f"nsfw {view}: {k}/{len(todo)} in {took:.0f} s", flush=True)
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


def wilson(k: int, n: int) -> list[float]:
    """95% Wilson interval of k / n, to five digits (the figures already committed)."""
    return intervals.wilson(k, n, digits=5)


def _max_scores(scores: dict[str, dict[str, float]]) -> dict[str, float]:
    from clipaudit.safety.nudity import EXPOSED_CLASSES

    return {
        c: round(max((sc.get(c, 0.0) for sc in scores.values()), default=0), 3)
        for c in EXPOSED_CLASSES
    }


def bench_nsfw(
    folder: Path, cache: Path, write: bool, views: tuple[str, ...] = ("orig",)
) -> dict[str, Any]:
    """Thresholds chosen on the calibration photos in every view (a photo's score per class
    is its highest over the views), figures on the held-out photos in each view."""
    from clipaudit.safety.nudity import EXPOSED_CLASSES

    t0 = time.perf_counter()
    by_view = {v: nsfw_scores(folder, cache, v) for v in views}
    wall = time.perf_counter() - t0
    parts: dict[str, dict[str, dict[str, dict[str, float]]]] = {v: {} for v in views}
    for v, scores in by_view.items():
        parts[v] = {"calibration": {}, "held_out": {}}
        for rel, sc in scores.items():
            parts[v][part_of(rel)][rel] = sc
    worst: dict[str, dict[str, float]] = {}
    for v in views:
        for rel, sc in parts[v]["calibration"].items():
            w = worst.setdefault(rel, {})
            for c, x in sc.items():
                w[c] = max(w.get(c, 0.0), x)
    old = dict.fromkeys(EXPOSED_CLASSES, 0.5)
    shipped = json.loads(THRESHOLDS.read_text())["classes"]
    new = choose_thresholds(worst, list(EXPOSED_CLASSES), floor=0.5, margin=0.1)
    rule = "per class: max benign calibration score + 0.1, up to the 0.05 grid, floor 0.5"
    if len(views) > 1:
        rule += f"; a photo's score is its highest over the views {', '.join(views)}"
    report: dict[str, Any] = {
        "what": "benign real photos dropped by nudenet's exposed classes (default route: drop)",
        "views": list(views),
        "photos": {k: len(v) for k, v in parts[views[0]].items()},
        "scoring_wall_s": round(wall, 1),
        "thresholds_old": old,
        "thresholds_before": shipped,
        "thresholds_chosen": new,
        "rule": rule,
        "calibration_max_score": {v: _max_scores(parts[v]["calibration"]) for v in views},
    }
    for name, th in (("old", old), ("before", shipped), ("chosen", new)):
        for v in views:
            for part, got in parts[v].items():
                hit = dropped(got, th)
                key = f"dropped_{name}_{part}" + ("" if v == "orig" else f"_{v}")
                report[key] = {
                    "count": len(hit),
                    "share": round(len(hit) / max(len(got), 1), 5),
                    "interval95": wilson(len(hit), len(got)),
                    "examples": hit[:15],
                }
    if write:
        doc = json.loads(THRESHOLDS.read_text())  # video_* keys are video_nsfw_benign.py's
        doc.update(
            {
                "classes": new,
                "calibrated_on": f"{len(worst)} benign real photos (Caltech-101 and a clothing "
                "set, the calibration part of shared/photos), each in the views "
                + ", ".join(views),
                "rule": rule,
                "held_out_dropped": {
                    v: report["dropped_chosen_held_out" + ("" if v == "orig" else f"_{v}")]["count"]
                    for v in views
                },
                "held_out_photos": len(parts[views[0]]["held_out"]),
            }
        )
        # A clip's threshold is never below the photo's (video_nsfw_benign.py's rule).
        if "video_classes" in doc:
            doc["video_classes"] = {
                c: max(float(t), new.get(c, 0.0)) for c, t in doc["video_classes"].items()
            }
        THRESHOLDS.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
    return report


VARIANTS = ("half", "jpeg30", "bright13", "mirror", "crop90", "border_black", "border_white")


def make_variant(im: Any, kind: str, rng: Any) -> Any:
    """One edited copy of a photo (PIL image, RGB)."""
    from PIL import ImageEnhance, ImageOps

    w, h = im.size
    if kind == "half":
        return im.resize((max(1, w // 2), max(1, h // 2)))
    if kind == "bright13":
        return ImageEnhance.Brightness(im).enhance(1.3)
    if kind == "mirror":
        return ImageOps.mirror(im)
    if kind == "crop90":  # keeps 90% of each side, at a random offset
        cw, ch = int(w * 0.9), int(h * 0.9)
        x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        return im.crop((x, y, x + cw, y + ch))
    if kind.startswith("border_"):
        fill = (0, 0, 0) if kind == "border_black" else (255, 255, 255)
        return ImageOps.expand(im, border=int(0.08 * w), fill=fill)
    return im  # jpeg30: only the re-encode below differs


def near_pool(folder: Path, out: Path, distinct: int, varied: int) -> dict[str, str]:
    """Writes the pool as an image folder; returns file stem → (original stem, variant)."""
    import io

    import numpy as np
    from PIL import Image

    held = photos(folder, "held_out")
    rng = np.random.default_rng(0)
    pick = sorted(rng.choice(len(held), size=min(distinct, len(held)), replace=False).tolist())
    out.mkdir(parents=True, exist_ok=True)
    truth: dict[str, str] = {}
    for k, i in enumerate(pick):
        src = held[i]
        im = Image.open(src).convert("RGB")
        stem = f"p{k:05d}"
        caption = f"a photo of {src.parent.name.replace('_', ' ')} number {k}"
        im.save(out / f"{stem}.jpg", quality=92)
        (out / f"{stem}.txt").write_text(caption)
        if k < varied:
            for v in VARIANTS:
                buf = io.BytesIO()
                make_variant(im, v, rng).save(buf, "JPEG", quality=30 if v == "jpeg30" else 92)
                (out / f"{stem}_{v}.jpg").write_bytes(buf.getvalue())
                (out / f"{stem}_{v}.txt").write_text(caption)
                truth[f"{stem}_{v}"] = stem
    return truth


def _score_groups(
    groups: list[set[str]], truth: dict[str, str], stems: list[str]
) -> dict[str, Any]:
    """Recall per variant and pair precision from duplicate groups of file stems."""
    root = {s: s.split("_")[0] for s in stems}
    group_of: dict[str, int] = {}
    for g, members in enumerate(groups):
        for m in members:
            group_of[m] = g
    recall: dict[str, float] = {}
    for v in VARIANTS:
        pairs = [(s, o) for s, o in truth.items() if s.endswith("_" + v)]
        hit = sum(s in group_of and group_of.get(o) == group_of[s] for s, o in pairs)
        recall[v] = round(hit / max(len(pairs), 1), 3)
    right = wrong = 0
    for members in groups:
        ms = sorted(members)
        for a_i, a in enumerate(ms):
            for b in ms[a_i + 1 :]:
                if root[a] == root[b]:
                    right += 1
                else:
                    wrong += 1
    return {
        "recall": recall,
        "pairs_called": right + wrong,
        "pair_precision": round(right / max(right + wrong, 1), 4),
        "wrong_pairs": wrong,
    }


def bench_near(folder: Path, cache: Path, distinct: int, varied: int) -> dict[str, Any]:
    import subprocess

    import pyarrow.parquet as pq

    pool = cache / f"near-{distinct}-{varied}"
    if not pool.is_dir():
        truth = near_pool(folder, pool, distinct, varied)
        (cache / f"near-{distinct}-{varied}.json").write_text(json.dumps(truth))
    truth = json.loads((cache / f"near-{distinct}-{varied}.json").read_text())
    stems = sorted(p.stem for p in pool.glob("*.jpg"))
    run = cache / f"near-run-{distinct}-{varied}"
    shutil.rmtree(run, ignore_errors=True)
    t0 = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "clipaudit",
            "curate",
            str(pool),
            "--out",
            str(run),
            "--stages",
            "quality,hashes",
            "--rules",
            "default",
            "--allow-gate-failure",
        ],
        check=True,
        capture_output=True,
    )
    wall = time.perf_counter() - t0
    dec = pq.read_table(run / "decisions.parquet", columns=["id", "duplicate_of"]).to_pylist()
    ids = {r["id"]: r["duplicate_of"] for r in dec}
    stem_of = {i: Path(i).stem for i in ids}
    members: dict[str, set[str]] = {}
    for i, d in ids.items():
        top = d or i
        while ids.get(top):
            top = ids[top] or top
        members.setdefault(top, set()).add(stem_of[i])
    groups = [g for g in members.values() if len(g) > 1]
    out: dict[str, Any] = {
        "photos": {"distinct": distinct, "varied": varied, "files": len(stems)},
        "clipaudit": {**_score_groups(groups, truth, stems), "curate_wall_s": round(wall, 1)},
    }
    try:
        PHash = imagededup_phash()
        dup = PHash().find_duplicates(image_dir=str(pool), max_distance_threshold=10)
        out["imagededup_phash_10"] = _score_groups(_components(dup), truth, stems)
    except ImportError:
        out["imagededup_phash_10"] = "not installed"
    try:
        from cleanvision import Imagelab

        lab = Imagelab(data_path=str(pool))
        lab.find_issues({"near_duplicates": {}, "exact_duplicates": {}})
        sets = lab.info["near_duplicates"]["sets"] + lab.info["exact_duplicates"]["sets"]
        groups_cv = [{Path(p).stem for p in s} for s in sets]
        out["cleanvision"] = _score_groups(_merge(groups_cv), truth, stems)
    except ImportError:
        out["cleanvision"] = "not installed"
    return out


def visible_pool(folder: Path, out: Path, skip: frozenset[str]) -> dict[str, dict[str, Any]]:
    """Every held-out photo whole, clean and under one held-out-style mark (seeded apart from
    training), both saved as JPEG q90; photos labelled as already marked are written as they
    are. Returns file stem → {"photo", "marked", ...the mark's description}."""
    import random

    from PIL import Image

    from clipaudit.safety.visible import marks as vm

    out.mkdir(parents=True, exist_ok=True)
    truth: dict[str, dict[str, Any]] = {}
    for k, src in enumerate(photos(folder, "held_out")):
        rel = src.relative_to(folder).as_posix()
        rng = random.Random(f"bench-visible:{rel}")
        im = Image.open(src).convert("RGB")
        if rel in skip:
            im.save(out / f"v{k:05d}_already.jpg", quality=90)
            truth[f"v{k:05d}_already"] = {"photo": rel, "marked": True, "layout": "already"}
            continue
        im.save(out / f"v{k:05d}_clean.jpg", quality=90)
        truth[f"v{k:05d}_clean"] = {"photo": rel, "marked": False}
        ov = vm.draw_overlay(rng, "heldout")
        vm.apply_overlay(im, ov, rng).save(out / f"v{k:05d}_mark.jpg", quality=90)
        truth[f"v{k:05d}_mark"] = {"photo": rel, "marked": True, **ov.describe()}
    return truth


def bench_visible(folder: Path, cache: Path) -> dict[str, Any]:
    """The shipped detector end to end (``curate --stages quality,visible_watermark``, default
    pack) on held-out photos: AUROC, and detection / false-positive rates at the pack's
    threshold with 95% intervals, overall, by mark style and by photo source."""
    import subprocess

    import numpy as np
    import pyarrow.parquet as pq
    from sklearn.metrics import roc_auc_score

    from clipaudit.rules.schema import load_pack
    from clipaudit.safety.visible.train import labels_digest, marked_photos

    # Keyed by the labels: a photo labelled "already marked" later must not stay clean here.
    skip = marked_photos()
    key = labels_digest(skip)[:12]
    pool, record = cache / f"visible-pool-{key}", cache / f"visible-pool-{key}.json"
    if not record.is_file():
        shutil.rmtree(pool, ignore_errors=True)
        truth = visible_pool(folder, pool, skip)
        record.write_text(json.dumps(truth))
    truth = json.loads(record.read_text())
    run = cache / "visible-run"
    shutil.rmtree(run, ignore_errors=True)
    t0 = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "clipaudit", "curate", str(pool), "--out", str(run), "--stages",
         "quality,visible_watermark", "--rules", "default", "--allow-gate-failure"],
        check=True, capture_output=True,
    )  # fmt: skip
    wall = time.perf_counter() - t0
    thr = load_pack("default").visible_watermark.threshold
    rows = pq.read_table(run / "decisions.parquet", columns=["id", "visible_watermark_score",
                         "reasons"]).to_pylist()  # fmt: skip
    score = {Path(r["id"]).stem: r["visible_watermark_score"] for r in rows}
    flagged = {Path(r["id"]).stem for r in rows if "watermark_suspect" in (r["reasons"] or [])}
    assert all(score[s] is not None for s in truth), "every pool image decodes"

    def rate(stems: list[str]) -> dict[str, Any]:
        k = sum(s in flagged for s in stems)
        return {"rate": round(k / len(stems), 4) if stems else None, "k": k, "n": len(stems),
                "ci95": wilson(k, len(stems))}  # fmt: skip

    clean = [s for s, t in truth.items() if not t["marked"]]
    marked = [s for s, t in truth.items() if t["marked"] and t["layout"] != "already"]
    already = [s for s, t in truth.items() if t.get("layout") == "already"]
    y = np.r_[np.zeros(len(clean)), np.ones(len(marked))]
    auc = roc_auc_score(y, [score[s] for s in clean] + [score[s] for s in marked])
    by: dict[str, dict[str, Any]] = {}
    for key in ("layout", "effect", "kind"):
        vals = sorted({truth[s][key] for s in marked})
        by[key] = {v: rate([s for s in marked if truth[s][key] == v]) for v in vals}
    sources = sorted({truth[s]["photo"].split("/")[0] for s in truth})
    return {
        "what": "held-out photos whole, clean and under one held-out-style mark (fonts, "
        "texts, logos never trained on), JPEG q90, scored by `curate --stages "
        "quality,visible_watermark` with the default pack",
        "threshold": thr,
        "photos": len(clean),
        "auroc": round(float(auc), 4),
        "tpr": rate(marked),
        "fpr": rate(clean),
        "by_source": {
            src: {
                "fpr": rate([s for s in clean if truth[s]["photo"].startswith(src + "/")]),
                "tpr": rate([s for s in marked if truth[s]["photo"].startswith(src + "/")]),
            }
            for src in sources
        },
        "by_style": by,
        "photos_already_marked_flagged": rate(already),
        "clean_flagged_examples": sorted(truth[s]["photo"] for s in clean if s in flagged)[:20],
        "curate_wall_s": round(wall, 1),
        "images": len(truth),
    }


def imagededup_phash() -> Any:
    """imagededup's PHash class. Its package init builds the CNN method, which downloads
    MobileNet weights (no network here); the hashing methods do not need it, so a stand-in
    module takes the CNN's place."""
    import types

    if "imagededup.methods.cnn" not in sys.modules:
        stub = types.ModuleType("imagededup.methods.cnn")
        stub.CNN = None  # type: ignore[attr-defined]
        sys.modules["imagededup.methods.cnn"] = stub
    from imagededup.methods.hashing import PHash

    return PHash


def _components(dup: dict[str, list[str]]) -> list[set[str]]:
    return _merge([{Path(k).stem, *(Path(v).stem for v in vs)} for k, vs in dup.items() if vs])


def _merge(sets: list[set[str]]) -> list[set[str]]:
    """Connected components of overlapping sets (a duplicate graph's groups)."""
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for s in sets:
        items = sorted(s)
        for x in items[1:]:
            parent[find(x)] = find(items[0])
    comps: dict[str, set[str]] = {}
    for x in parent:
        comps.setdefault(find(x), set()).add(x)
    return [c for c in comps.values() if len(c) > 1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--photos", type=Path, default=ROOT.parent / "shared" / "photos")
    ap.add_argument("--cache", type=Path, default=Path("/tmp/clipaudit-real-photos"))
    ap.add_argument(
        "--nsfw-views",
        nargs="+",
        choices=list(NSFW_VIEWS),
        default=["orig"],
        help="views of each photo the NSFW thresholds must hold on (orig first)",
    )
    ap.add_argument("--nsfw", action="store_true")
    ap.add_argument("--write-thresholds", action="store_true")
    ap.add_argument("--near", action="store_true")
    ap.add_argument("--visible", action="store_true")
    ap.add_argument("--distinct", type=int, default=1000)
    ap.add_argument("--varied", type=int, default=200)
    args = ap.parse_args()
    results = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    if args.nsfw:
        results["nsfw"] = {
            **bench_nsfw(args.photos, args.cache, args.write_thresholds, tuple(args.nsfw_views))
        }
        results["nsfw"]["machine"] = machine
        print(json.dumps({k: v for k, v in results["nsfw"].items() if "dropped" in k}, indent=1))
    if args.near:
        results["near_duplicates"] = bench_near(args.photos, args.cache, args.distinct, args.varied)
        results["near_duplicates"]["machine"] = machine
        print(json.dumps(results["near_duplicates"], indent=1))
    if args.visible:
        results["visible_watermark"] = {**bench_visible(args.photos, args.cache)}
        results["visible_watermark"]["machine"] = machine
        print(json.dumps(results["visible_watermark"], indent=1))
    RESULTS.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
