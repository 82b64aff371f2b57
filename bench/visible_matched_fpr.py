"""Two visible-watermark detectors on the same held-out images, compared at matched false-positive
rates: their ROC curves at the low rates a pack threshold lives at, not each at its own
threshold (where one may simply flag more clean photos than the other).

    python bench/real_photos.py --visible          # builds the held-out pool once
    python bench/visible_matched_fpr.py shipped=src/clipaudit/models/bundled/watermark-detector \
        trial=DIR [name=DIR ...]

The rates here are read off the held-out clean photos themselves, so they describe the curves;
the operating point a user gets is the pack threshold chosen on the tune photos
(``real_photos.json``). Results: ``bench/results/visible_matched_fpr.json`` (``--out`` for a
trial's); detectors measured there before and not named now are carried forward (marked so)
when the pool and the first detector are the same. Each detector's scores are kept in the
cache folder, so the shipped one is scored once however many trials it is compared with.
"""

from __future__ import annotations

import argparse
import itertools
import json
import platform
import sys
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "visible_matched_fpr.json"
RATES = (0.0025, 0.005, 0.0075, 0.01, 0.02, 0.05)


def matched_threshold(clean: np.ndarray, rate: float) -> float:
    """The score a mark must beat so that at most ``rate`` of the clean photos are flagged."""
    k = int(np.floor(rate * len(clean)))
    return float(np.sort(clean)[::-1][k]) if k < len(clean) else -np.inf  # fewer on ties


def tpr_at(clean: np.ndarray, marked: np.ndarray, rate: float) -> dict[str, Any]:
    """Detection when at most ``rate`` of the clean photos score at or above the threshold."""
    thr = matched_threshold(clean, rate)
    flagged = int((clean > thr).sum())
    return {"clean_flagged": flagged, "detected": round(float((marked > thr).mean()), 4)}


def pauc(clean: np.ndarray, marked: np.ndarray, max_fpr: float) -> float:
    """Area under the ROC curve up to ``max_fpr``, divided by ``max_fpr`` (1.0 is perfect)."""
    thr = np.sort(clean)[::-1]
    n = int(np.floor(max_fpr * len(clean)))
    tprs = [float((marked > t).mean()) for t in thr[: n + 1]]
    return float(np.mean(tprs))


def paired_pauc_gap(
    base: tuple[np.ndarray, np.ndarray],
    other: tuple[np.ndarray, np.ndarray],
    max_fpr: float = 0.01,
    reps: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """``other``'s partial AUROC minus ``base``'s, with a 95% bootstrap interval: clean and
    marked images resampled alike for both detectors (a paired comparison), so a gap whose
    interval holds 0 is not a gap."""
    rng = np.random.default_rng(seed)
    (bc, bm), (oc, om) = base, other
    gaps = []
    for _ in range(reps):
        i, j = rng.integers(0, len(bc), len(bc)), rng.integers(0, len(bm), len(bm))
        gaps.append(pauc(oc[i], om[j], max_fpr) - pauc(bc[i], bm[j], max_fpr))
    lo, hi = np.percentile(gaps, [2.5, 97.5])
    gap = pauc(oc, om, max_fpr) - pauc(bc, bm, max_fpr)
    return {"gap": round(gap, 4), "ci95": [round(float(lo), 4), round(float(hi), 4)], "reps": reps}


# A mark's strength as the detector sees it: the share of its input pixels (the marked image
# and its clean twin, both squashed to 320 px) that the mark moves by more than 12 levels in
# some channel, beyond the JPEG noise between the twins; binned at these shares.
CHANGE_STEP = 12
SHARE_EDGES = (0.0, 0.001, 0.003, 0.01, 0.03, 0.1, 1.01)


def changed_shares(pool: Path, marked: list[str], side: int = 320) -> np.ndarray:
    """Per marked image of ``pool``, the share of input pixels its mark changes (see above)."""
    from PIL import Image

    def read(name: str) -> np.ndarray:
        with Image.open(pool / f"{name}.jpg") as im:
            small = im.convert("RGB").resize((side, side), Image.Resampling.BILINEAR)
        return np.asarray(small, np.int16)

    out = []
    for name in marked:
        diff = np.abs(read(name) - read(name.replace("_mark", "_clean")))
        out.append(float((diff.max(2) > CHANGE_STEP).mean()))
    return np.array(out)


def by_style(clean: np.ndarray, marked: np.ndarray, truth: list[dict[str, Any]],
             rate: float = 0.01, shares: np.ndarray | None = None) -> dict[str, Any]:  # fmt: skip
    """Detection by layout, by kind and by layout × kind at the threshold that flags ``rate``
    of the clean photos, and the curve without a logo alone in a single or centre spot (a lone
    graphic over the photo: the case that caps the whole, whether its shape is new or not,
    see ``visible_lone_logo_trial.py``)."""
    from sklearn.metrics import roc_auc_score

    thr = matched_threshold(clean, rate)
    hit = marked > thr

    def rates(keys: list[str]) -> dict[str, Any]:
        return {
            key: {
                "detected": round(float(hit[[x == key for x in keys]].mean()), 3),
                "n": keys.count(key),
            }
            for key in sorted(set(keys))
        }

    if shares is not None:
        bins = np.digitize(shares, SHARE_EDGES[1:-1])
        edges = [f"{a:g}-{b:g}" for a, b in itertools.pairwise(SHARE_EDGES[:-1])]
        labels = [*edges, f"{SHARE_EDGES[-2]:g}+"]
        by_share = rates([labels[b] for b in bins])
    lone = np.array([t["kind"] == "logo" and t["layout"] in ("single", "center") for t in truth])
    rest = marked[~lone]
    y = np.r_[np.zeros(len(clean)), np.ones(len(rest))]
    return {
        "clean_rate": rate,
        "layout": rates([t["layout"] for t in truth]),
        "kind": rates([t["kind"] for t in truth]),
        "layout_kind": rates([f"{t['layout']}/{t['kind']}" for t in truth]),
        **({"changed_share": by_share} if shares is not None else {}),
        "without_lone_logos": {
            "n": len(rest),
            "auroc": round(float(roc_auc_score(y, np.r_[clean, rest])), 4),
            "detected": round(float((rest > thr).mean()), 4),
        },
    }


def carry_earlier(earlier: dict[str, Any], now: dict[str, Any]) -> dict[str, Any]:
    """``now`` with the earlier file's detectors that were not measured again, where both were
    measured on the same pool against the same first detector (so their gaps still compare);
    each carried record says so. Trial folders often live in /tmp and are gone a session later."""
    first = next(iter(now["detectors"]))
    before = earlier.get("detectors", {})
    same = (earlier.get("clean"), earlier.get("marked")) == (now["clean"], now["marked"]) and (
        before.get(first, {}).get("weights_sha256") == now["detectors"][first]["weights_sha256"]
    )
    if not same:
        return now
    for name, rec in before.items():
        if name not in now["detectors"]:
            now["detectors"][name] = {**rec, "carried_from_an_earlier_run": True}
    return now


def held_out_pool(cache: Path) -> tuple[Path, dict[str, Any], list[str], list[str]]:
    """The pool ``real_photos.py --visible`` built in ``cache``: its image folder, its truth,
    the clean names and the marked ones (photos that came with a mark of their own left out)."""
    from clipaudit.safety.visible.train import labels_digest, marked_photos

    key = labels_digest(marked_photos())[:12]  # the key real_photos.py gives its pool
    record = cache / f"visible-pool-{key}.json"
    if not record.is_file():
        sys.exit(f"no held-out pool at {record}: run `python bench/real_photos.py --visible` first")
    truth = json.loads(record.read_text())
    clean = sorted(s for s, t in truth.items() if not t["marked"])
    marked = sorted(s for s, t in truth.items() if t["marked"] and t["layout"] != "already")
    return cache / f"visible-pool-{key}", truth, clean, marked


def scores(folder: Path, paths: list[Path], cache: Path | None = None) -> np.ndarray:
    """The detector's scores of ``paths``; kept in ``cache`` under the detector's head and
    backbone sha256 and the list of images, so a detector already measured on this pool is
    not scored again (the shipped one, at every trial)."""
    import hashlib

    from PIL import Image

    from clipaudit.safety.visible.detector import load_from

    cfg = json.loads((folder / "config.json").read_text())
    train = json.loads((folder / "metrics.json").read_text())["training"]
    # The pool folder is part of each name: every pool calls its images v00000_clean.jpg, ...
    listed = "\n".join(f"{p.parent.name}/{p.name}" for p in paths)
    names = hashlib.sha256(listed.encode()).hexdigest()[:12]
    shas = f"{train['weights_sha256'][:16]}-{str(cfg.get('backbone_sha256', 'none'))[:16]}"
    kept = cache / f"visible-scores-{names}-{shas}.npy" if cache else None
    if kept is not None and kept.is_file():
        return np.load(kept)
    det = load_from(folder)
    out = []
    for i in range(0, len(paths), 64):
        ims = []
        for p in paths[i : i + 64]:
            with Image.open(p) as im:
                ims.append(im.convert("RGB"))
        out.append(det.score(ims))
    got = np.concatenate(out)
    if kept is not None:
        np.save(kept, got)
    return got


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("detectors", nargs="+", metavar="NAME=DIR", help="detector folders")
    ap.add_argument("--cache", type=Path, default=Path("/tmp/clipaudit-real-photos"))
    ap.add_argument("--out", type=Path, default=RESULTS, help="where the JSON goes (a trial's)")
    args = ap.parse_args()
    named = [d.partition("=") for d in args.detectors]
    for name, eq, folder in named:
        if not eq or not (Path(folder) / "metrics.json").is_file():
            ap.error(f"{name}{eq}{folder}: give NAME=DIR with DIR a detector folder")
    from sklearn.metrics import roc_auc_score

    pool, truth, clean, marked = held_out_pool(args.cache)
    shares = changed_shares(pool, marked)
    out: dict[str, Any] = {"what": __doc__.splitlines()[0], "clean": len(clean),
                           "marked": len(marked), "detectors": {}}  # fmt: skip
    kept: list[tuple[np.ndarray, np.ndarray]] = []
    for name, _, path in named:
        folder = Path(path)
        s = scores(folder, [pool / f"{x}.jpg" for x in clean + marked], args.cache)
        c, m = s[: len(clean)], s[len(clean) :]
        meta = json.loads((folder / "metrics.json").read_text())["training"]
        y = np.r_[np.zeros(len(c)), np.ones(len(m))]
        out["detectors"][name] = {
            "weights_sha256": meta["weights_sha256"][:16],
            "stage_steps": (meta.get("stage") or {}).get("steps"),
            # Parts of cached pairs the stage tuned over; None: no tuned stage, or one from before
            # --parts existed (the recipe's 10).
            "stage_parts": (meta.get("stage") or {}).get("parts"),
            "auroc": round(float(roc_auc_score(y, np.r_[c, m])), 4),
            "pauc_to_fpr_0.01": round(pauc(c, m, 0.01), 4),
            "tpr_at_matched_fpr": {str(r): tpr_at(c, m, r) for r in RATES},
            "by_style": by_style(c, m, [truth[x] for x in marked], shares=shares),
        }
        if kept:  # against the first detector named
            out["detectors"][name]["pauc_gap_to_" + named[0][0]] = paired_pauc_gap(kept[0], (c, m))
        kept.append((c, m))
        print(name, json.dumps(out["detectors"][name]), flush=True)
    out["machine"] = f"{platform.machine()}, Python {platform.python_version()}"
    if args.out.is_file():
        out = carry_earlier(json.loads(args.out.read_text()), out)
    args.out.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
