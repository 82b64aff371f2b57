"""Trial: does a second look at the frame in tiles (each tile at ~1.7x the whole frame's
resolution) lift the shipped visible-watermark head on real photos, without retraining?

    python bench/visible_multiview_trial.py --photos ../shared/photos

Every pair is drawn exactly as the card's measurement draws it (same seeds, same marks), but
kept at 640² instead of 320², so the views can be cut from it: the whole frame (resized to
320, what ships), and four overlapping tiles of 60% of each side (resized to 320). The
head's logits on each view are combined (max, whole + w·max tile, and a logistic
combination fitted on fit-part pairs under training-style marks: never on tune or held-out
photos). Thresholds at 1%/5% FPR on the clean tune photos; figures on held-out photos under
held-out marks. Writes bench/results/visible_multiview_trial.json.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from clipaudit.safety.visible import backbone as vb
from clipaudit.safety.visible import data as vd
from clipaudit.safety.visible.detector import BUNDLED_DIR, backbone_and_head
from clipaudit.safety.visible.stream import fresh_pair
from clipaudit.safety.visible.train import auroc, marked_photos, rate_ci, threshold_at

BIG = 640
TILE = 384  # 60% of each side
STARTS = (0, BIG - TILE)


def views(x: np.ndarray) -> np.ndarray:
    """[N, BIG, BIG, 3] → [N, 5, 320, 320, 3]: the whole frame, then four tiles."""
    s = vb.INPUT_SIZE
    out = np.empty((len(x), 5, s, s, 3), np.uint8)
    for i, a in enumerate(x):
        im = Image.fromarray(a)
        out[i, 0] = np.asarray(im.resize((s, s), Image.Resampling.BILINEAR))
        k = 1
        for y0 in STARTS:
            for x0 in STARTS:
                t = im.crop((x0, y0, x0 + TILE, y0 + TILE))
                out[i, k] = np.asarray(t.resize((s, s), Image.Resampling.BILINEAR))
                k += 1
    return out


class Logits:
    def __init__(self, folder: Path) -> None:
        self.backbone, self.head = backbone_and_head(folder, 2)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """[N, BIG, BIG, 3] → logits [N, 5]."""
        out = []
        for i in range(0, len(x), 64):
            v = views(x[i : i + 64])
            n = len(v)
            p3, p4 = self.backbone.features(v.reshape(n * 5, *v.shape[2:]))
            out.append(vb.head_logits(self.head, p3, p4).reshape(n, 5))
        return np.concatenate(out)


def combos(z: np.ndarray, lr: tuple[np.ndarray, float] | None) -> dict[str, np.ndarray]:
    whole, tiles = z[:, 0], z[:, 1:]
    tmax = tiles.max(1)
    out = {"whole (shipped)": whole, "max of whole and tiles": np.maximum(whole, tmax),
           "tile max": tmax}  # fmt: skip
    for w in (0.25, 0.5, 1.0):
        out[f"whole + {w} * tile max"] = whole + w * tmax
    out["whole + mean tiles"] = whole + tiles.mean(1)
    if lr is not None:
        out["logistic (fit part)"] = feats(z) @ lr[0] + lr[1]
    return out


def feats(z: np.ndarray) -> np.ndarray:
    t = np.sort(z[:, 1:], 1)
    return np.c_[z[:, 0], t[:, -1], t[:, -2], t.mean(1)]


def card_logits(
    folder: Path, skip: frozenset[str], model: Callable[[np.ndarray], np.ndarray], t0: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[Any]]:
    """``model`` on the card's clean and marked tune pairs and held-out pairs (same seeds, same
    marks as the card's measurement; drawn at whatever ``vd.input_size`` the caller set):
    tune clean, tune marked, held-out clean, held-out marked, and the held-out marks."""
    tune = vd.Bank.build("heldout", 0, folder, "tune", skip=skip)
    c, m, _ = tune.whole(random.Random("visible-tune:0"), "heldout")
    tc, tm = model(c), model(m)
    del tune, c, m
    print(f"tune {time.time() - t0:.0f} s", flush=True)
    held = vd.Bank.build("heldout", 0, folder, "held_out", skip=skip)
    c, m, ovs = held.whole(random.Random("visible-real:0"), "heldout")
    hc, hm = model(c), model(m)
    del held, c, m
    print(f"held out {time.time() - t0:.0f} s", flush=True)
    return tc, tm, hc, hm, ovs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photos", required=True)
    ap.add_argument("--detector", default=str(BUNDLED_DIR))
    ap.add_argument("--fit-pairs", type=int, default=1500)
    ap.add_argument("--out", default="bench/results/visible_multiview_trial.json")
    a = ap.parse_args()
    folder, skip = Path(a.photos), marked_photos()
    model = Logits(Path(a.detector))
    t0 = time.time()
    with vd.input_size(BIG):
        fit = vd.Bank.build("train", 200, folder, "fit", skip=skip)
        rng = random.Random("multiview-fit:0")
        pairs = [fresh_pair(rng, fit, 0.85, True) for _ in range(a.fit_pairs)]
        del fit
        fz = model(np.stack([p[0] for p in pairs] + [p[1] for p in pairs]))
        fy = np.r_[np.zeros(len(pairs)), np.ones(len(pairs))]
        del pairs
        print(f"fit pairs {time.time() - t0:.0f} s", flush=True)
        tc, tm, hc, hm, ovs = card_logits(folder, skip, model, t0)
    from sklearn.linear_model import LogisticRegression

    clf = LogisticRegression(C=1.0, max_iter=1000).fit(feats(fz), fy)
    lr = (clf.coef_[0], float(clf.intercept_[0]))
    res: dict[str, object] = {"n_tune": len(tc), "n_held_out": len(hc), "fit_pairs": a.fit_pairs,
                              "logistic": {"coef": lr[0].round(4).tolist(),
                                           "intercept": round(lr[1], 4)}}  # fmt: skip
    layouts = np.array([o.layout for o in ovs])
    rows: dict[str, dict[str, Any]] = {}
    for (name, sc), tmk, hcn, hmk in zip(
        combos(tc, lr).items(), combos(tm, lr).values(), combos(hc, lr).values(),
        combos(hm, lr).values(), strict=True,
    ):  # fmt: skip
        t1 = threshold_at(sc, 0.01)
        rows[name] = {
            "tune_auroc": round(auroc(sc, tmk), 4),
            "auroc": round(auroc(hcn, hmk), 4),
            "tpr_1": rate_ci(hmk, t1),
            "fpr_1": rate_ci(hcn, t1),
            "by_layout_tpr_1": {
                k: round(float((hmk[layouts == k] >= t1).mean()), 3) for k in sorted(set(layouts))
            },
        }
        r = rows[name]
        print(f"{name:28s} AUROC {r['auroc']:.4f}  TPR {r['tpr_1']['rate']:.3f} at FPR "
              f"{r['fpr_1']['rate']:.4f}  {r['by_layout_tpr_1']}", flush=True)  # fmt: skip
    res["rows"] = rows
    res["seconds"] = round(time.time() - t0, 1)
    Path(a.out).write_text(json.dumps(res, indent=2) + "\n")
    np.savez("/tmp/multiview_logits.npz", fz=fz, fy=fy, tc=tc, tm=tm, hc=hc, hm=hm,
             layouts=layouts)  # fmt: skip


if __name__ == "__main__":
    main()
