"""Trial: fine-tune the visible-watermark detector's whole cut — nudenet's stem (model.0 to
model.2) as well as the stride-8 and stride-16 stages and the head — from pixels, on freshly
drawn training pairs.

    python bench/visible_fullcut_trial.py --photos ../shared/photos --out DIR [--steps 900]

Why: every tuning so far ran over features cached below the stages it tuned, so the stem
stayed as nudenet trained it (for nudity, not for faint overlays), and loss reweighting over
those features moved nothing (``stage_train --tail-weight``). A step from pixels costs about
1.8 s for 64 inputs on two cores, as much per input as a stride-8 tuning step plus drawing.

Starts from the shipped detector (``--init``), BCE, AdamW with 50 warm-up steps and a cosine
decay, pairs drawn as ``head_train`` draws them (fit photos 85%, world scenes 15%, training
styles only) from a stream seeded per step (``stream.step_pairs``). Writes a detector folder
to ``--out`` (the shipped one's files with the tuned graph and head, the graph checked against
torch on a real photo) for ``bench/visible_matched_fpr.py`` to compare with the shipped one.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import time
from pathlib import Path
from typing import cast

import numpy as np
import torch
from torch import nn

from clipaudit.safety.visible import backbone as vb
from clipaudit.safety.visible import data as vd
from clipaudit.safety.visible.detector import BUNDLED_DIR, CONFIG, METRICS, WEIGHTS, sha256_file
from clipaudit.safety.visible.head_train import PHOTO_SHARE
from clipaudit.safety.visible.stage_train import (
    Stage,
    _conv_silu,
    load_convs,
    onnx_convs,
    stage_from_cut,
    write_convs,
)
from clipaudit.safety.visible.stream import step_pairs
from clipaudit.safety.visible.train import marked_photos

# The stem's convolutions in the exported graph, in Stem.convs() order.
STEM_CONVS = ("model.0.conv", "model.1.conv", "model.2.cv1.conv", "model.2.m.0.cv1.conv",
              "model.2.m.0.cv2.conv", "model.2.cv2.conv")  # fmt: skip


class Stem(nn.Module):
    """YOLOv8n's model.0 to model.2 as the exported graph computes them: two stride-2 convs
    and a C2f with one residual bottleneck (pixels/255 → P2, 32 channels at stride 4)."""

    def __init__(self) -> None:
        super().__init__()
        self.c0, self.c1 = _conv_silu(3, 16, 3, 2), _conv_silu(16, 32, 3, 2)
        self.cv1 = _conv_silu(32, 32, 1)
        self.m = nn.Sequential(_conv_silu(16, 16, 3), _conv_silu(16, 16, 3))
        self.cv2 = _conv_silu(48, 32, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self.cv1(self.c1(self.c0(x))).chunk(2, 1)
        return self.cv2(torch.cat([a, b, b + self.m(b)], 1))

    def convs(self) -> list[nn.Conv2d]:
        seq = [self.c0, self.c1, self.cv1, self.m[0], self.m[1], self.cv2]
        return [cast(nn.Conv2d, cast(nn.Sequential, s)[0]) for s in seq]


class FullCut(nn.Module):
    def __init__(self, stem: Stem, s8: Stage, s16: Stage, head: vb.Head) -> None:
        super().__init__()
        self.stem, self.s8, self.s16, self.head = stem, s8, s16, head

    def features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        p3 = self.s8(self.stem(x))
        return p3, self.s16(p3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(*self.features(x))


def stem_from_cut(cut: Path) -> Stem:
    stem = Stem()
    load_convs(cut, stem.convs(), STEM_CONVS)
    return stem


def write_full_cut(src: Path, model: FullCut, out: Path) -> str:
    """``src``'s graph with every tuned weight in place; returns its sha256."""
    stages = [(s.convs(), onnx_convs(s.first)) for s in (model.s8, model.s16)]
    return write_convs(src, [(model.stem.convs(), STEM_CONVS), *stages], out)


def to_tensor(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2), np.float32) / 255.0)


def main(argv: list[str] | None = None) -> None:
    from safetensors.torch import load_file, save_file

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photos", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--init", type=Path, default=BUNDLED_DIR)
    ap.add_argument("--steps", type=int, default=900)
    ap.add_argument("--batch", type=int, default=64, help="inputs a step (half clean)")
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args(argv)
    if not a.photos.is_dir():
        ap.error(f"--photos {a.photos} is not a folder; give the shared photos folder")
    if a.steps < 1 or a.batch < 2 or a.batch % 2:
        ap.error(f"--steps {a.steps} --batch {a.batch}: give 1 or more steps, an even batch")
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    cut = a.init / vb.BACKBONE
    head = vb.Head(int(json.loads((a.init / CONFIG).read_text()).get("width", 128)))
    head.load_state_dict(load_file(str(a.init / WEIGHTS)))
    model = FullCut(stem_from_cut(cut), stage_from_cut(cut, 3), stage_from_cut(cut, 5), head)
    t0 = time.time()
    with vd.input_size(vb.INPUT_SIZE):
        bank = vd.Bank.build("train", 200, a.photos, "fit", skip=marked_photos())
    t_bank = time.time() - t0
    opt = torch.optim.AdamW(model.parameters(), a.lr, weight_decay=1e-4)
    bce = nn.functional.binary_cross_entropy_with_logits
    y = torch.from_numpy(np.r_[np.zeros(a.batch // 2), np.ones(a.batch // 2)].astype(np.float32))
    losses: list[float] = []
    t_draw = t_step = 0.0
    model.train()
    for step in range(a.steps):
        t1 = time.time()
        with vd.input_size(vb.INPUT_SIZE):
            pairs = step_pairs(bank, a.seed, step, a.batch // 2, PHOTO_SHARE, True)
        x = np.stack([p[0] for p in pairs] + [p[1] for p in pairs])
        t2 = time.time()
        warm = min(1.0, (step + 1) / 50)
        for g in opt.param_groups:
            g["lr"] = a.lr * warm * 0.5 * (1 + math.cos(math.pi * step / a.steps))
        loss = bce(model(to_tensor(x)), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
        t_draw, t_step = t_draw + t2 - t1, t_step + time.time() - t2
        if (step + 1) % 100 == 0:
            print(f"step {step + 1}: loss {np.mean(losses[-100:]):.4f}", flush=True)
    model.eval()
    a.out.mkdir(parents=True, exist_ok=True)
    for f in (CONFIG, METRICS):
        shutil.copy(a.init / f, a.out / f)
    cut_sha = write_full_cut(cut, model, a.out / vb.BACKBONE)
    save_file(vb.state(head), str(a.out / WEIGHTS))
    # The graph must compute what was trained: P3 and P4 on a real photo.
    photo = vd.to_input(next(iter(vd.real_photos().values())), vb.INPUT_SIZE)[None]
    got3, got4 = vb.Backbone(a.out / vb.BACKBONE, a.threads).features(photo)
    with torch.inference_mode():
        mine3, mine4 = (t.numpy() for t in model.features(to_tensor(photo)))
    gap = max(float(np.abs(mine3 - got3).max()), float(np.abs(mine4 - got4).max()))
    if gap > 0.02 * max(1.0, float(np.abs(mine4).max())):
        raise RuntimeError(f"the exported cut differs from the trained one by {gap:.4f}")
    config = json.loads((a.out / CONFIG).read_text())
    config["backbone_sha256"] = cut_sha
    config["backbone_from"] += "; model.0 to model.6 fine-tuned by bench/visible_fullcut_trial.py"
    (a.out / CONFIG).write_text(json.dumps(config, indent=2) + "\n")
    metrics = json.loads((a.out / METRICS).read_text())
    w = max(1, min(50, len(losses) // 4))
    metrics["training"].update({
        "weights_sha256": sha256_file(a.out / WEIGHTS), "backbone_sha256": cut_sha,
        "fullcut_trial": {
            "from": metrics["training"]["weights_sha256"], "steps": a.steps, "batch": a.batch,
            "lr": a.lr, "seed": a.seed, "inputs_seen": a.steps * a.batch,
            "loss_first": round(float(np.mean(losses[:w])), 4),
            "loss_last": round(float(np.mean(losses[-w:])), 4),
            "losses_every_100": [round(v, 4) for v in losses[::100]],
            "export_max_abs_diff": round(gap, 6),
            "seconds": {"bank": round(t_bank, 1), "draw": round(t_draw, 1),
                        "train": round(t_step, 1)},
        },
    })  # fmt: skip
    metrics["training"].pop("stage", None)
    for k in ("tune", "real_photos", "heldout", "limits"):  # the shipped detector's figures
        metrics.pop(k, None)
    (a.out / METRICS).write_text(json.dumps(metrics, indent=2) + "\n")
    print(json.dumps(metrics["training"]["fullcut_trial"]))


if __name__ == "__main__":
    main()
