"""Trial: are the visible-watermark detector's low-rate errors an artefact of how its head pools?

    python bench/visible_pool_trial.py --photos ../shared/photos [--parts 8 --pairs 1000]

At 1% of clean photos flagged, the clean photos above the threshold are often plain photos
whose evidence map has one hot cell (thorns, fur, clouds), and the head reads its last map
(128 channels × 10 × 10 cells at 320 px) by a per-channel max and mean. Here that map is kept
exactly as shipped and other readers of it are fitted: logistic regressions over per-channel
statistics (max, mean, mean of the top 2 / 4 / 8 cells, and the max of 2×2 and 3×3
neighbourhood means: evidence spread over several cells, as a word is and a texture spike is
not) and a one-hidden-layer MLP. They are fitted on fresh training-style pairs drawn from the
fit photos (``--parts`` − 1 parts of ``--pairs`` clean inputs and their marked twins; the last
part validates), each logistic's L2 strength chosen on the validation part, then all are read
once on the held-out pool (``real_photos.py --visible``) beside the shipped head, with the
paired partial-AUROC gap of ``visible_matched_fpr.py``. Writes
bench/results/visible_pool_trial.json.
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

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from visible_matched_fpr import held_out_pool, paired_pauc_gap, pauc, tpr_at

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "visible_pool_trial.json"
SHIPPED = ROOT / "src" / "clipaudit" / "models" / "bundled" / "watermark-detector"

# The readers' inputs: statistic names, per channel of the last map.
SETS = (
    ("max", "mean"),  # what the shipped head reads, refitted: the control
    ("max", "mean", "top2", "top4", "top8"),
    ("mean", "top4", "top8"),
    ("max", "mean", "avg2", "avg3"),
    ("mean", "avg2", "avg3"),
    ("max", "mean", "top4", "avg2", "avg3"),
)
CS = (0.01, 0.1, 1.0)


def last_maps(x: np.ndarray, backbone: Any, head: Any) -> np.ndarray:
    """The head's last convolution map (before pooling) of uint8 NHWC inputs, float16."""
    p3, p4 = backbone.features(x)
    out = []
    with torch.inference_mode():
        for i in range(0, len(p3), 256):
            a = torch.from_numpy(p3[i : i + 256].astype(np.float32))
            b = torch.from_numpy(p4[i : i + 256].astype(np.float32))
            out.append(head.last_map(a, b).numpy().astype(np.float16))
    return np.concatenate(out)


def pooled(maps: np.ndarray, kinds: tuple[str, ...]) -> np.ndarray:
    """Per-channel statistics of ``maps`` (N, C, H, W), side by side."""
    f = maps.astype(np.float32)
    flat = f.reshape(len(f), f.shape[1], -1)
    ranked = np.sort(flat, axis=2)
    t = torch.from_numpy(f)
    cols = []
    for kind in kinds:
        if kind == "max":
            cols.append(ranked[:, :, -1])
        elif kind == "mean":
            cols.append(flat.mean(2))
        elif kind.startswith("top"):
            cols.append(ranked[:, :, -int(kind[3:]) :].mean(2))
        elif kind.startswith("avg"):
            cols.append(F.avg_pool2d(t, int(kind[3:]), 1).amax((2, 3)).numpy())
        else:
            raise ValueError(f"unknown statistic {kind!r}")
    return np.concatenate(cols, 1).astype(np.float64)  # float32 probabilities saturate at 1


def shipped_logits(maps: np.ndarray, head: Any) -> np.ndarray:
    with torch.inference_mode():
        return head.read(torch.from_numpy(maps.astype(np.float32))).numpy()


def draw_parts(photos: Path, parts: int, pairs: int, backbone: Any, head: Any) -> list[dict]:
    from clipaudit.safety.visible import backbone as vb
    from clipaudit.safety.visible import data as vd
    from clipaudit.safety.visible.head_train import PHOTO_SHARE
    from clipaudit.safety.visible.stream import fresh_pair
    from clipaudit.safety.visible.train import marked_photos

    bank = vd.Bank.build("train", 200, photos, "fit", skip=marked_photos())
    out = []
    for k in range(parts):
        rng = random.Random(f"pool-trial:{k}")  # not the shipped training parts' seeds
        with vd.input_size(vb.INPUT_SIZE):
            drawn = [fresh_pair(rng, bank, PHOTO_SHARE, True) for _ in range(pairs)]
        x = np.stack([p[0] for p in drawn] + [p[1] for p in drawn])
        y = np.r_[np.zeros(pairs), np.ones(pairs)]
        out.append({"maps": last_maps(x, backbone, head), "y": y})
    return out


def measured(val: tuple[np.ndarray, np.ndarray], clean: np.ndarray, marked: np.ndarray,
             base: tuple[np.ndarray, np.ndarray] | None) -> dict[str, Any]:  # fmt: skip
    from sklearn.metrics import roc_auc_score

    s, y = val
    truth = np.r_[np.zeros(len(clean)), np.ones(len(marked))]
    rec: dict[str, Any] = {
        "validation_auroc": round(float(roc_auc_score(y, s)), 4),
        "validation_pauc_to_fpr_0.01": round(pauc(s[y == 0], s[y == 1], 0.01), 4),
        "auroc": round(float(roc_auc_score(truth, np.r_[clean, marked])), 4),
        "pauc_to_fpr_0.01": round(pauc(clean, marked, 0.01), 4),
        "detected_at_matched_fpr_0.01": tpr_at(clean, marked, 0.01)["detected"],
    }
    if base is not None:
        rec["pauc_gap_to_shipped"] = paired_pauc_gap(base, (clean, marked))
    return rec


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photos", type=Path, required=True, help="../shared/photos")
    ap.add_argument("--parts", type=int, default=8, help="parts drawn; the last validates")
    ap.add_argument("--pairs", type=int, default=1000, help="clean inputs per part")
    ap.add_argument("--cache", type=Path, default=Path("/tmp/clipaudit-real-photos"))
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    if args.parts < 2 or args.pairs < 100:
        ap.error(f"--parts {args.parts} / --pairs {args.pairs}: give at least 2 parts of 100")
    from PIL import Image
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from clipaudit.safety.visible import backbone as vb
    from clipaudit.safety.visible.detector import backbone_and_head, to_input

    pool, _, clean_names, marked_names = held_out_pool(args.cache)
    torch.set_num_threads(2)
    config = json.loads((SHIPPED / "config.json").read_text())
    backbone, head = backbone_and_head(SHIPPED, config=config)
    head.eval()
    t0 = time.time()
    parts = draw_parts(args.photos, args.parts, args.pairs, backbone, head)
    drawn_s = time.time() - t0
    names = clean_names + marked_names
    pool_maps = []
    for i in range(0, len(names), 128):
        x = []
        for n in names[i : i + 128]:
            with Image.open(pool / f"{n}.jpg") as im:
                x.append(to_input(im.convert("RGB"), vb.INPUT_SIZE))
        pool_maps.append(last_maps(np.stack(x), backbone, head))
    held = np.concatenate(pool_maps)
    nc = len(clean_names)
    fit_maps = np.concatenate([p["maps"] for p in parts[:-1]])
    fit_y = np.concatenate([p["y"] for p in parts[:-1]])
    val_maps, val_y = parts[-1]["maps"], parts[-1]["y"]

    s_val, s_held = shipped_logits(val_maps, head), shipped_logits(held, head)
    base = (s_held[:nc], s_held[nc:])
    readers: dict[str, Any] = {"shipped head": measured((s_val, val_y), *base, None)}
    print("shipped head", readers["shipped head"], flush=True)
    for kinds in SETS:
        xf, xv, xh = (pooled(m, kinds) for m in (fit_maps, val_maps, held))
        best: tuple[float, float, Any] | None = None
        val_by_c = {}
        for c in CS:
            model = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=3000))
            model.fit(xf, fit_y)
            sv = model.decision_function(xv)
            val_by_c[str(c)] = round(pauc(sv[val_y == 0], sv[val_y == 1], 0.01), 4)
            if best is None or val_by_c[str(c)] > best[0]:
                best = (val_by_c[str(c)], c, model)
        assert best is not None
        model = best[2]
        sh = model.decision_function(xh)
        name = "logistic " + "+".join(kinds)
        readers[name] = {
            "C_chosen_on_validation": best[1],
            "validation_pauc_by_C": val_by_c,
            **measured((model.decision_function(xv), val_y), sh[:nc], sh[nc:], base),
        }
        print(name, readers[name], flush=True)
    kinds = ("max", "mean", "top4")
    mlp = make_pipeline(StandardScaler(), MLPClassifier((128,), alpha=1e-2, early_stopping=True,
                                                        max_iter=200, random_state=0))  # fmt: skip
    mlp.fit(pooled(fit_maps, kinds), fit_y)

    def logit(x: np.ndarray) -> np.ndarray:
        p = np.clip(mlp.predict_proba(x)[:, 1], 1e-12, 1 - 1e-12)
        return np.asarray(np.log(p / (1 - p)))

    sh = logit(pooled(held, kinds))
    name = "mlp(128) " + "+".join(kinds)
    readers[name] = measured((logit(pooled(val_maps, kinds)), val_y), sh[:nc], sh[nc:], base)
    print(name, readers[name], flush=True)
    out = {
        "what": __doc__.splitlines()[0],
        "command": "python bench/visible_pool_trial.py --photos ../shared/photos "
        f"--parts {args.parts} --pairs {args.pairs}",
        "fit_inputs": len(fit_y),
        "validation_inputs": len(val_y),
        "held_out": {"clean": nc, "marked": len(marked_names)},
        "drawing_s": round(drawn_s),
        "readers": readers,
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads, "
        f"Python {platform.python_version()}",
    }
    args.out.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
