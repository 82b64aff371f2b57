"""Curation throughput: the pipeline end to end vs a naive one-image-at-a-time script.

Both compute the same signals on the same 256-px world images: decode, quality numbers,
pHash + dHash + a pixel hash, and the CLIP cosine with the bundled model (the stages
``quality,hashes,alignment``). The run with every default stage (rights, C2PA, opt-outs,
watermarks, NSFW too) is timed beside it on a subset, for the record. The naive script
does one image at a time with imagehash and open_clip (no batching, no overlap); it runs on
a subset and its rate is reported per image. Writes bench/results/curate_throughput.json.

    python bench/curate_throughput.py [--n 5000] [--naive-n 500]
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import torch


def naive(data_dir: Path, limit: int) -> tuple[int, float]:
    import imagehash
    from PIL import Image

    from clipaudit.data import open_dataset
    from clipaudit.models import load_clip

    clip = load_clip("bundled:world-clip")
    model, preprocess, tokenizer = clip.model, clip.preprocess, clip.tokenizer
    n = 0
    t0 = time.perf_counter()
    for sample in open_dataset(data_dir):
        if n >= limit:
            break
        im = Image.open(io.BytesIO(sample.image or b"")).convert("RGB")
        _ = (im.size, len(sample.image or b""), len((sample.caption or "").split()))
        imagehash.phash(im)
        imagehash.dhash(im)
        hashlib.sha256(im.tobytes()).hexdigest()
        with torch.inference_mode():
            a = model.encode_image(preprocess(im).unsqueeze(0), normalize=True)
            b = model.encode_text(tokenizer([sample.caption or ""]), normalize=True)
            float((a * b).sum())
        n += 1
    return n, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--naive-n", type=int, default=500)
    ap.add_argument("--all-stages-n", type=int, default=1000)
    args = ap.parse_args()
    from clipaudit.curate.pipeline import CurateConfig, curate
    from clipaudit.world import write_world

    tmp = Path(tempfile.mkdtemp(prefix="clipaudit-bench-"))
    try:
        write_world(
            tmp / "w", split="eval-retrieval", n=args.n, format="webdataset", shard_size=1000
        )
        data = tmp / "w" / "data"
        t0 = time.perf_counter()
        core = ["quality", "hashes", "alignment"]
        stats = curate(
            CurateConfig(dataset=str(data), out=str(tmp / "run"), stages=core, gates=False)
        )
        wall = time.perf_counter() - t0
        write_world(tmp / "w2", split="eval-retrieval", n=args.all_stages_n, format="webdataset")
        t_all = time.perf_counter()
        all_stats = curate(CurateConfig(dataset=str(tmp / "w2" / "data"), out=str(tmp / "run2")))
        all_wall = time.perf_counter() - t_all
        t = stats["timings"]
        # Main-thread seconds per step; "decode" is the wait on the decode/prepare pool that
        # the one-batch look-ahead did not hide. Stand-alone stage costs belong to the scale
        # benchmark.
        per_stage = {
            k: round(v, 2)
            for k, v in t.items()
            if k in ("decode", "quality", "hashes", "alignment")
        }
        n_naive, naive_s = naive(data, args.naive_n)
        result = {
            "n": args.n,
            "end_to_end_images_per_s": round(args.n / wall, 1),
            "scoring_images_per_s": round(args.n / t["scoring_wall"], 1),
            "main_thread_seconds": per_stage,
            "naive_images_per_s": round(n_naive / naive_s, 1),
            "speedup_over_naive": round((args.n / wall) / (n_naive / naive_s), 2),
            "timings_s": t,
            "all_default_stages": {
                "n": args.all_stages_n,
                "images_per_s": round(args.all_stages_n / all_wall, 1),
                "timings_s": all_stats["timings"],
            },
            "machine": {
                "cpus": os.cpu_count(),
                "torch_threads": torch.get_num_threads(),
                "platform": platform.platform(),
            },
        }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    out = Path(__file__).parent / "results" / "curate_throughput.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(
        f"end to end {result['end_to_end_images_per_s']} img/s, naive "
        f"{result['naive_images_per_s']} img/s, speedup {result['speedup_over_naive']}x; "
        f"per stage {per_stage}; wrote {out}"
    )


if __name__ == "__main__":
    main()
