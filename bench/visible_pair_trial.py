"""Trial: does a second, different visible-watermark detector beside the shipped one lift it
on real photos? The shipped head over nudenet's stages and the small CNN trained from nothing
that shipped before it (commit 0066800) learned from different features, so their mistakes
may differ where two tunings of the same head's did not.

    git show 0066800:src/clipaudit/models/bundled/watermark-detector/... > DIR/...   # the CNN
    python bench/visible_pair_trial.py --photos ../shared/photos --second DIR

The score is the shipped logit plus ``w`` × the second's. ``w`` is chosen on the card's
**tune** pairs (highest partial AUROC to 1% FPR), and only then read on the held-out pairs
(the card's measurement, same seeds and marks) and on the held-out pool that ``real_photos.py
--visible`` curates end to end (JPEG files, scored from the cache ``visible_matched_fpr.py``
keeps). Thresholds at 1% FPR on the clean tune pairs. Writes
bench/results/visible_pair_trial.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from clipaudit.safety.visible import data as vd
from clipaudit.safety.visible.detector import BUNDLED_DIR, load_from
from clipaudit.safety.visible.train import auroc, marked_photos, rate_ci, threshold_at

sys.path.insert(0, str(Path(__file__).resolve().parent))
from visible_matched_fpr import held_out_pool, paired_pauc_gap, pauc, scores, tpr_at
from visible_multiscale_trial import shown
from visible_multiview_trial import card_logits

WEIGHTS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.7, 1.0, 1.5)


def logit(p: np.ndarray) -> np.ndarray:
    q = np.clip(p.astype(np.float64), 1e-7, 1 - 1e-7)
    return np.log(q / (1 - q))


class Pair:
    """[N, 320, 320, 3] card inputs → logits [N, 2]: shipped, second (at its own input size)."""

    def __init__(self, first: Path, second: Path) -> None:
        self.first, self.second = load_from(first), load_from(second)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        size = self.second.input_size
        small = np.stack(
            [
                np.asarray(Image.fromarray(a).resize((size, size), Image.Resampling.BILINEAR))
                for a in x
            ]
        )
        a = self.first.score_arrays(x, threads=2)
        b = self.second.score_arrays(small, threads=2)
        return np.stack([logit(a), logit(b)], 1)


def row(
    clean: np.ndarray,
    marked: np.ndarray,
    base: tuple[np.ndarray, np.ndarray],
    thr: float | None = None,
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "auroc": round(auroc(clean, marked), 4),
        "pauc_to_fpr_0.01": round(pauc(clean, marked, 0.01), 4),
        "pauc_gap_to_shipped": paired_pauc_gap(base, (clean, marked), reps=500),
        "tpr_at_matched_fpr_0.01": tpr_at(clean, marked, 0.01),
    }
    if thr is not None:  # the tune threshold at 1%, as a pack would hold it
        out["tpr_at_tune_threshold"] = rate_ci(marked, thr)
        out["fpr_at_tune_threshold"] = rate_ci(clean, thr)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photos", required=True)
    ap.add_argument("--second", required=True, help="the second detector's folder")
    ap.add_argument("--detector", default=str(BUNDLED_DIR))
    ap.add_argument("--cache", type=Path, default=Path("/tmp/clipaudit-real-photos"))
    ap.add_argument("--out", default="bench/results/visible_pair_trial.json")
    a = ap.parse_args()
    folder, skip = Path(a.photos), marked_photos()
    if not folder.is_dir():
        sys.exit(f"--photos {folder} is not a folder: give the folder of real photographs")
    first, second = Path(a.detector), Path(a.second)
    model = Pair(first, second)
    t0 = time.time()
    with vd.input_size(model.first.input_size):
        tc, tm, hc, hm, _ = card_logits(folder, skip, model, t0)
    nt, nh = len(tc), len(hc)
    tune = {w: np.r_[tc[:, 0] + w * tc[:, 1], tm[:, 0] + w * tm[:, 1]] for w in WEIGHTS}
    tune_pauc = {w: pauc(s[:nt], s[nt:], 0.01) for w, s in tune.items()}
    chosen = max(WEIGHTS, key=lambda w: tune_pauc[w])
    base = (hc[:, 0], hm[:, 0])
    card: dict[str, Any] = {}
    for w in WEIGHTS:
        thr = threshold_at(tune[w][:nt], 0.01)
        held = row(hc[:, 0] + w * hc[:, 1], hm[:, 0] + w * hm[:, 1], base, thr)
        card[str(w)] = {"tune_pauc_to_fpr_0.01": round(tune_pauc[w], 4), **held}
    card["second alone"] = row(hc[:, 1], hm[:, 1], base)
    # The end-to-end pool: the same held-out photos saved as files and read as curate reads them.
    pool, _, clean, marked = held_out_pool(a.cache)
    paths = [pool / f"{x}.jpg" for x in clean + marked]
    pa, pb = logit(scores(first, paths, a.cache)), logit(scores(second, paths, a.cache))
    n = len(clean)
    pool_base = (pa[:n], pa[n:])
    pool_rows = {str(w): row((pa + w * pb)[:n], (pa + w * pb)[n:], pool_base) for w in WEIGHTS}
    res = {
        "what": __doc__.splitlines()[0],
        "detector": shown(first),
        "second": {
            "folder": shown(second),
            "arch": model.second.config.get("arch"),
            "weights_sha256": model.second.sha256[:16],
        },
        "n_tune": nt,
        "n_held_out": nh,
        "chosen_on_tune": chosen,
        "card_pairs": card,
        "pool_end_to_end": {
            "clean": n,
            "marked": len(marked),
            # How alike the two detectors' mistakes can be: their logits' correlation.
            "logit_correlation": {
                "clean": round(float(np.corrcoef(pa[:n], pb[:n])[0, 1]), 3),
                "marked": round(float(np.corrcoef(pa[n:], pb[n:])[0, 1]), 3),
            },
            "rows": pool_rows,
        },
        "seconds": round(time.time() - t0, 1),
    }
    for w in WEIGHTS:
        got = card[str(w)]
        print(
            f"w {w}: tune pAUC {got['tune_pauc_to_fpr_0.01']}  card {json.dumps(got)}"
            f"  pool {json.dumps(pool_rows[str(w)])}",
            flush=True,
        )
    print(f"chosen on tune: {chosen}", flush=True)
    Path(a.out).write_text(json.dumps(res, indent=2) + "\n")


if __name__ == "__main__":
    main()
