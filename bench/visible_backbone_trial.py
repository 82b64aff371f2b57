"""Trial: the visible-watermark detector as a small head over a frozen, pretrained backbone.

Kept as the record of the trial (20,000 pairs, 6 epochs); the shipped detector is trained by
``python -m clipaudit.safety.visible.head_train`` on the same recipe with more pairs.

The shipped detector is a CNN trained from nothing on two CPU cores, and it underfits: it
misses large, plainly visible words. nudenet's wheel (MIT) ships a YOLO-style detector
trained on real photographs; its first stages are generic image features. This trial cuts
its graph after the stride-8 and stride-16 stages (P3 40×40×64 and P4 20×20×128 at 320 px;
the cut needs the ``onnx`` package), runs them once over training pairs (cached, fp16),
trains a four-convolution head on the cached features, and measures it exactly as the
shipped detector's card does: thresholds at 1% FPR on the clean tune photos, every figure on
the held-out photos, whole, clean and under one held-out-style mark.

    python bench/visible_backbone_trial.py --photos ../shared/photos --parts 5 --epochs 6

Pairs: ``--parts`` × 4,000 fresh pairs from the fit photos (85%) and world scenes, drawn as
training draws them (``visible.stream.fresh_pair``) but at 320 px. Results:
``bench/results/visible_backbone_trial.json``.
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

RESULTS = ROOT / "bench" / "results" / "visible_backbone_trial.json"
SIZE = 320
PAIRS_PER_PART = 4000


def backbone(threads: int) -> Any:
    """The package's own cut of nudenet's graph (``visible.backbone.cut``), in a temp file."""
    import tempfile

    from clipaudit.safety.visible import backbone as vb

    path = Path(tempfile.mkdtemp()) / vb.BACKBONE
    vb.cut(path)
    return vb.Backbone(path, threads)


def features(sess: Any, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """uint8 NHWC at SIZE → (P3, P4) as fp16."""
    p3, p4 = sess.features(x)
    return p3, p4


def cached(cache: Path, name: str, make: Any) -> dict[str, np.ndarray]:
    path = cache / f"{name}.npz"
    if not path.is_file():
        cache.mkdir(parents=True, exist_ok=True)
        np.savez(path, **make())
    return dict(np.load(path))


def pair_features(
    sess: Any, clean: np.ndarray, marked: np.ndarray, **extra: np.ndarray
) -> dict[str, np.ndarray]:
    p3, p4 = features(sess, np.concatenate([clean, marked]))
    y = np.r_[np.zeros(len(clean)), np.ones(len(marked))].astype(np.float32)
    return {"p3": p3, "p4": p4, "y": y, **extra}


def build_sets(photos: Path, cache: Path, parts: int, threads: int) -> dict[str, Any]:
    from clipaudit.safety.visible import data as vd
    from clipaudit.safety.visible.stream import fresh_pair
    from clipaudit.safety.visible.train import marked_photos

    vd.INPUT_SIZE = SIZE  # to_input reads it at call time: pairs at the backbone's size
    sess = backbone(threads)
    skip = marked_photos()

    def whole(part: str, seed: str) -> dict[str, np.ndarray]:
        bank = vd.Bank.build("heldout", 0, photos, part, skip=skip)  # type: ignore[arg-type]
        c, m, ovs = bank.whole(random.Random(seed), "heldout")
        return pair_features(sess, c, m, layout=np.array([o.layout for o in ovs]),
                             kind=np.array([o.kind for o in ovs]))  # fmt: skip

    sets: dict[str, Any] = {
        "tune": cached(cache, "tune", lambda: whole("tune", "visible-tune:0")),
        "held": cached(cache, "held_out", lambda: whole("held_out", "visible-real:0")),
    }
    bank: list[Any] = []

    def train_part(k: int) -> dict[str, np.ndarray]:
        if not bank:
            bank.append(vd.Bank.build("train", 200, photos, "fit", skip=skip))
        rng = random.Random(f"yolo-train:{k}")
        pairs = [fresh_pair(rng, bank[0], 0.85, True) for _ in range(PAIRS_PER_PART)]
        return pair_features(sess, np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs]))

    # Filled part by part into one preallocated array: concatenating would hold it twice.
    names = [f"train{k}" for k in range(parts)]
    for k, name in enumerate(names):
        if not (cache / f"{name}.npz").is_file():
            cached(cache, name, lambda k=k: train_part(k))
    n = 2 * PAIRS_PER_PART
    out: dict[str, np.ndarray] = {"p3": np.empty((parts * n, 64, 40, 40), np.float16),
           "p4": np.empty((parts * n, 128, 20, 20), np.float16),
           "y": np.empty(parts * n, np.float32)}  # fmt: skip
    for k, name in enumerate(names):
        with np.load(cache / f"{name}.npz") as z:
            for key in out:
                out[key][k * n : (k + 1) * n] = z[key]
    sets["train"] = out
    return sets


def head_net(width: int) -> Any:
    import torch
    from torch import nn

    def blk(i: int, o: int, s: int = 1) -> nn.Sequential:
        return nn.Sequential(nn.Conv2d(i, o, 3, s, 1, bias=False), nn.BatchNorm2d(o),
                             nn.ReLU(inplace=True))  # fmt: skip

    class Head(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.down, self.a, self.b = blk(64, 64, 2), blk(192, width), blk(width, width)
            self.pool, self.c, self.fc = nn.MaxPool2d(2), blk(width, width), nn.Linear(2 * width, 1)

        def forward(self, p3: torch.Tensor, p4: torch.Tensor) -> torch.Tensor:
            f = torch.cat([self.down(p3), p4], 1)
            f = self.c(self.pool(self.b(self.a(f))))
            return self.fc(torch.cat([f.amax((2, 3)), f.mean((2, 3))], 1)).squeeze(1)

    return Head()


def run(args: argparse.Namespace) -> dict[str, Any]:
    import torch
    from sklearn.metrics import roc_auc_score

    from clipaudit.calibrate.intervals import wilson

    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    t0 = time.time()
    sets = build_sets(args.photos, args.cache, args.parts, args.threads)
    t_feats = time.time() - t0
    p3, p4, y = (sets["train"][k] for k in ("p3", "p4", "y"))
    net = head_net(args.width)
    opt = torch.optim.AdamW(net.parameters(), 1e-3, weight_decay=1e-4)
    bs = 128
    steps = args.epochs * (len(y) // bs)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 2e-3, total_steps=steps)

    def score(d: dict[str, np.ndarray]) -> np.ndarray:
        net.eval()
        out = []
        with torch.inference_mode():
            for i in range(0, len(d["y"]), 256):
                a = torch.from_numpy(d["p3"][i : i + 256].astype(np.float32))
                b = torch.from_numpy(d["p4"][i : i + 256].astype(np.float32))
                out.append(net(a, b).numpy())
        net.train()
        return np.concatenate(out)

    def measure() -> dict[str, Any]:
        tune, held = sets["tune"], sets["held"]
        st, sh = score(tune), score(held)
        clean_t = np.sort(st[tune["y"] == 0])[::-1]
        thr = float(clean_t[int(0.01 * len(clean_t))])
        hit = sh[held["y"] == 1] > thr
        fp = sh[held["y"] == 0] > thr

        def by(key: str) -> dict[str, float]:
            g = held[key]
            return {k: round(float(hit[g == k].mean()), 3) for k in sorted(set(g.tolist()))}

        return {
            "tune_auroc": round(float(roc_auc_score(tune["y"], st)), 4),
            "auroc": round(float(roc_auc_score(held["y"], sh)), 4),
            "tpr_at_tune_fpr_0.01": {"rate": round(float(hit.mean()), 4),
                                     "ci95": wilson(int(hit.sum()), len(hit))},
            "fpr_at_tune_fpr_0.01": {"rate": round(float(fp.mean()), 4),
                                     "ci95": wilson(int(fp.sum()), len(fp))},
            "by_layout": by("layout"),
            "by_kind": by("kind"),
        }  # fmt: skip

    curve = []
    t1 = time.time()
    for ep in range(args.epochs):
        perm = np.random.default_rng(ep).permutation(len(y))
        total = 0.0
        for i in range(0, len(y) - bs + 1, bs):
            ix = np.sort(perm[i : i + bs])
            logit = net(torch.from_numpy(p3[ix].astype(np.float32)),
                        torch.from_numpy(p4[ix].astype(np.float32)))  # fmt: skip
            loss = torch.nn.functional.binary_cross_entropy_with_logits(
                logit, torch.from_numpy(y[ix])
            )
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item()
        row = {"epoch": ep, "loss": round(total / (len(y) // bs), 4), "s": round(time.time() - t1)}
        if ep % 2 == 1 or ep == args.epochs - 1:
            row.update({k: v for k, v in measure().items() if k in ("tune_auroc", "auroc")})
        curve.append(row)
        print(json.dumps(row), flush=True)
    result = measure()

    # Inference cost on this machine: backbone + head for one image, batch 32, 2 threads.
    sess = backbone(args.threads)
    x = np.random.default_rng(0).integers(0, 255, (32, SIZE, SIZE, 3), dtype=np.uint8)
    features(sess, x[:4])
    t = time.time()
    f3, f4 = features(sess, x)
    with torch.inference_mode():
        net.eval()
        net(torch.from_numpy(f3.astype(np.float32)), torch.from_numpy(f4.astype(np.float32)))
    ms = (time.time() - t) / 32 * 1000
    return {
        "what": "frozen nudenet 320n stages P3+P4 (at 320 px) + a trained 4-conv head",
        "pairs": len(y) // 2,
        "epochs": args.epochs,
        "head_params": sum(p.numel() for p in net.parameters()),
        "ms_per_image": round(ms, 1),
        "seconds": {"features": round(t_feats), "train": round(time.time() - t1)},
        "curve": curve,
        "held_out_photos": result,
        "shipped_for_comparison": {"auroc": 0.8638, "tpr": 0.4254, "fpr": 0.0024},
        "machine": f"{platform.machine()}, {args.threads} threads",
        "command": f"python bench/visible_backbone_trial.py --photos PHOTOS --parts "
        f"{args.parts} --epochs {args.epochs} --width {args.width}",
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photos", type=Path, default=ROOT.parent / "shared" / "photos")
    ap.add_argument("--cache", type=Path, default=Path("/tmp/yolo"))
    ap.add_argument("--parts", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--width", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    res = run(args)
    RESULTS.write_text(json.dumps(res, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(res["held_out_photos"]))


if __name__ == "__main__":
    main()
