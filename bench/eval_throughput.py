"""Time our zero-shot classification against clip-benchmark's on the same data and model.

Both read the same PNG bytes, decode with clipaudit's decoder, preprocess with the model's
transform, embed in batches of the same size in fp32 on the same device, and build the
class head from the same prompts. Writes bench/results/eval_throughput.json with
``ratio = ours_seconds / clip_benchmark_seconds`` (≤ 1: ours is not slower).

    .venv/bin/python bench/eval_throughput.py --n 256 --model bundled:world-clip
"""

from __future__ import annotations

import argparse
import io
import json
import platform
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from clip_benchmark.metrics import zeroshot_classification as cb_cls
from PIL import Image

from clipaudit.data import decode_image
from clipaudit.evaluate import BootstrapSpec, build_prompts, load_templates
from clipaudit.evaluate.classdata import ClassificationData
from clipaudit.evaluate.classification import zeroshot_classification
from clipaudit.evaluate.heads import HeadCache
from clipaudit.evaluate.images import ImageSet
from clipaudit.models import load_clip
from clipaudit.world.splits import scenes

OUT = Path(__file__).parent / "results" / "eval_throughput.json"


def _cb_accuracy(
    output: torch.Tensor, target: torch.Tensor, topk: tuple[int, ...] = (1,)
) -> list[float]:
    # clip-benchmark 1.6.2's accuracy with .item(): its float(1-element array) fails on numpy>=2.4.
    pred = output.topk(max(topk), 1, True, True)[1].t()
    correct = pred.eq(target.view(1, -1).expand_as(pred))
    return [float(correct[:k].reshape(-1).float().sum(0).item()) / len(target) for k in topk]


class Files(torch.utils.data.Dataset[tuple[torch.Tensor, int]]):
    def __init__(self, files: list[bytes], labels: list[int], preprocess: Any, classes: list[str]):
        self.files, self.labels, self.preprocess, self.classes = files, labels, preprocess, classes

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.preprocess(decode_image(self.files[i]).image), self.labels[i]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=256)
    ap.add_argument("--model", default="bundled:world-clip")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--templates", default="world-colors")
    args = ap.parse_args()

    clip = load_clip(args.model)
    device = clip.device.type
    files, truth = [], []
    for s in scenes("eval-objects", args.n, seed=1):
        buf = io.BytesIO()
        s.render(256).save(buf, format="PNG")
        files.append(buf.getvalue())
        truth.append(s.truth()["objects"][0]["color"])
    templates = load_templates(args.templates)
    classnames = sorted(set(truth))
    labels = np.array([classnames.index(t) for t in truth])
    prompts = build_prompts(classnames, templates, args.templates)

    def read() -> Iterator[tuple[Image.Image | None, str | None]]:
        for f in files:
            d = decode_image(f)
            yield d.image, d.error

    data = ClassificationData(
        "bench", ImageSet([str(i) for i in range(args.n)], read), labels, classnames
    )
    loader = torch.utils.data.DataLoader(
        Files(files, labels.tolist(), clip.preprocess, classnames), batch_size=args.batch_size
    )
    cb_cls.accuracy = _cb_accuracy

    def ours() -> dict[str, Any]:
        return zeroshot_classification(
            clip,
            data,
            prompts,
            boot=BootstrapSpec(0),
            heads=HeadCache(),
            batch_size=args.batch_size,
        )

    def theirs() -> dict[str, Any]:
        return cb_cls.evaluate(
            clip.model, loader, clip.tokenizer, classnames, templates, device, amp=False
        )

    timings: dict[str, list[float]] = {"ours": [], "clip_benchmark": []}
    results: dict[str, Any] = {}
    # Alternate, after one warm-up each, so a busy machine slows both alike.
    for warm in (ours, theirs):
        warm()
    for _ in range(2):
        for fn, name in ((ours, "ours"), (theirs, "clip_benchmark")):
            t = time.perf_counter()
            results[name] = fn()
            timings[name].append(time.perf_counter() - t)
    ours_s, cb_s = min(timings["ours"]), min(timings["clip_benchmark"])
    record = {
        "n_images": args.n,
        "model": args.model,
        "device": str(clip.device),
        "batch_size": args.batch_size,
        "templates": args.templates,
        "ours_seconds": round(ours_s, 4),
        "clip_benchmark_seconds": round(cb_s, 4),
        "ratio": round(ours_s / cb_s, 4),
        "ratio_means": "ours_seconds / clip_benchmark_seconds (<= 1: ours is not slower)",
        "acc1": {
            "ours": results["ours"]["metrics"]["acc1"]["value"],
            "clip_benchmark": results["clip_benchmark"]["acc1"],
        },
        "timings": timings,
        "machine": {"platform": platform.platform(), "torch_threads": torch.get_num_threads()},
        "note": "data and model identical for both; best of 2 alternating runs after a warm-up",
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(record, indent=2) + "\n")
    print(
        json.dumps(
            {k: record[k] for k in ("n_images", "ours_seconds", "clip_benchmark_seconds", "ratio")}
        )
    )


if __name__ == "__main__":
    main()
