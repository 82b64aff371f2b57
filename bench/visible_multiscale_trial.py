"""Trial: does reading the whole frame at more than one input size lift the shipped
visible-watermark detector on real photos, without retraining?

    python bench/visible_multiscale_trial.py --photos ../shared/photos

Every pair is drawn as the card's measurement draws it (same seeds, same marks) but kept at
640², then resized to each input size (256, 320 — what ships —, 384, 448) and read by the same
graph and head (the graph is fully convolutional and the head pools max and mean, so any size
runs; only 320 is what the stages were trained at). Combinations are the mean or the max of
the logits over sizes. One is chosen on the **tune** photos (highest partial AUROC to 1% FPR
among those costing at most ``--max-cost`` times the shipped read), and only then read on the
held-out photos, beside every other row (held-out rows other than the chosen one are for
looking, not choosing). Thresholds at 1% FPR on the clean tune photos. Writes
bench/results/visible_multiscale_trial.json.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from clipaudit.safety.visible import backbone as vb
from clipaudit.safety.visible import data as vd
from clipaudit.safety.visible.detector import BUNDLED_DIR, backbone_and_head
from clipaudit.safety.visible.train import auroc, marked_photos, rate_ci, threshold_at

sys.path.insert(0, str(Path(__file__).resolve().parent))
from visible_matched_fpr import paired_pauc_gap, pauc
from visible_multiview_trial import card_logits

BIG = 640
SIZES = (256, 320, 384, 448)
SHIPPED = 320


@contextmanager
def backbone_size(size: int) -> Iterator[None]:
    """Let the cut graph take ``size``² inputs inside the block (it checks for 320 otherwise)."""
    before, vb.INPUT_SIZE = vb.INPUT_SIZE, size
    try:
        yield
    finally:
        vb.INPUT_SIZE = before


class Logits:
    def __init__(self, folder: Path) -> None:
        self.backbone, self.head = backbone_and_head(folder, 2)
        self.ms: dict[int, list[float]] = {s: [] for s in SIZES}

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """[N, BIG, BIG, 3] → logits [N, len(SIZES)]."""
        cols = []
        for s in SIZES:
            t = time.time()
            small = np.stack(
                [
                    np.asarray(Image.fromarray(a).resize((s, s), Image.Resampling.BILINEAR))
                    for a in x
                ]
            )
            with backbone_size(s):
                p3, p4 = self.backbone.features(small)
            cols.append(vb.head_logits(self.head, p3, p4))
            self.ms[s].append(1000 * (time.time() - t) / max(1, len(x)))
        return np.stack(cols, 1)


def shown(folder: Path) -> str:
    """The detector folder as the record names it: relative to the repository where it lies
    there, else its name (a machine's own paths stay out of committed results)."""
    root = Path(__file__).resolve().parents[1]
    try:
        return str(folder.resolve().relative_to(root))
    except ValueError:
        return folder.name


def combos(z: np.ndarray) -> dict[str, tuple[np.ndarray, float]]:
    """Name → (score, cost in pixels read relative to the shipped 320² read)."""
    cost = {s: (s / SHIPPED) ** 2 for s in SIZES}
    out = {}
    for k in range(1, len(SIZES) + 1):
        for group in itertools.combinations(range(len(SIZES)), k):
            sizes = [SIZES[i] for i in group]
            c = round(sum(cost[s] for s in sizes), 2)
            name = "+".join(map(str, sizes))
            out[f"mean {name}"] = (z[:, list(group)].mean(1), c)
            if k > 1:
                out[f"max {name}"] = (z[:, list(group)].max(1), c)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photos", required=True)
    ap.add_argument("--detector", default=str(BUNDLED_DIR))
    ap.add_argument("--max-cost", type=float, default=2.5)
    ap.add_argument("--out", default="bench/results/visible_multiscale_trial.json")
    a = ap.parse_args()
    folder, skip = Path(a.photos), marked_photos()
    if not folder.is_dir():
        sys.exit(f"--photos {folder} is not a folder: give the folder of real photographs")
    model = Logits(Path(a.detector))
    t0 = time.time()
    with vd.input_size(BIG):
        tc, tm, hc, hm, ovs = card_logits(folder, skip, model, t0)
    layouts = np.array([o.layout for o in ovs])
    base = (hc[:, SIZES.index(SHIPPED)], hm[:, SIZES.index(SHIPPED)])
    rows: dict[str, dict[str, Any]] = {}
    tune_rows, held_rows = combos(np.r_[tc, tm]), combos(np.r_[hc, hm])
    nt, nh = len(tc), len(hc)
    for name, (ts, cost) in tune_rows.items():
        hs = held_rows[name][0]
        t1 = threshold_at(ts[:nt], 0.01)
        hcn, hmk = hs[:nh], hs[nh:]
        rows[name] = {
            "cost": cost,
            "tune_auroc": round(auroc(ts[:nt], ts[nt:]), 4),
            "tune_pauc_to_fpr_0.01": round(pauc(ts[:nt], ts[nt:], 0.01), 4),
            "auroc": round(auroc(hcn, hmk), 4),
            "pauc_to_fpr_0.01": round(pauc(hcn, hmk, 0.01), 4),
            "pauc_gap_to_320": paired_pauc_gap(base, (hcn, hmk), reps=500),
            "tpr_1": rate_ci(hmk, t1),
            "fpr_1": rate_ci(hcn, t1),
            "by_layout_tpr_1": {
                k: round(float((hmk[layouts == k] >= t1).mean()), 3) for k in sorted(set(layouts))
            },
        }
    affordable = {k: r for k, r in rows.items() if float(r["cost"]) <= a.max_cost}
    chosen = max(affordable, key=lambda k: float(affordable[k]["tune_pauc_to_fpr_0.01"]))
    for name in sorted(rows, key=lambda k: -float(rows[k]["tune_pauc_to_fpr_0.01"]))[:12]:
        r = rows[name]
        print(f"{name:22s} cost {r['cost']}  tune pAUC {r['tune_pauc_to_fpr_0.01']}  held-out"
              f" AUROC {r['auroc']}  pAUC {r['pauc_to_fpr_0.01']}  gap {r['pauc_gap_to_320']}"
              f"  TPR {r['tpr_1']['rate']} at FPR {r['fpr_1']['rate']}", flush=True)  # fmt: skip
    res = {
        "what": __doc__.splitlines()[0],
        "detector": shown(Path(a.detector)),
        "n_tune": nt,
        "n_held_out": nh,
        "sizes": list(SIZES),
        "ms_per_image_by_size": {s: round(float(np.median(v)), 2) for s, v in model.ms.items()},
        "max_cost": a.max_cost,
        "chosen_on_tune": chosen,
        "rows": rows,
        "seconds": round(time.time() - t0, 1),
    }
    print(f"chosen on tune: {chosen}: {json.dumps(rows[chosen])}", flush=True)
    Path(a.out).write_text(json.dumps(res, indent=2) + "\n")


if __name__ == "__main__":
    main()
