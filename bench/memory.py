"""Peak memory of curate against the dataset size: 10,000 vs 100,000 images.

One world pool of the largest size is generated (1,000-sample webdataset shards); each
smaller size is its first shards, linked into a folder of their own. Each size is curated
by the local engine in a fresh child process, whose peak resident set (``ru_maxrss``,
scoring and deciding together) is read with ``getrusage``. Target: the largest size's
peak at most 1.2x the smallest's (memory flat in the dataset size).

On the 2-core machine 100,000 images of the full stage set take hours, so by default the
pool is 64-px images (the world's invisible watermarks need 256 px and are turned off)
and the stage is ``quality`` (decode, sizes, caption language): per-batch memory does not
depend on the dataset's size, the run's per-sample state (signals, decisions, the kept
dataset's writer) does, and that is what this measures. ``hashes`` is left out because
decide's near-duplicate check gathers a 32x32 thumbnail pair for every pHash candidate pair
at once, and the world's similar scenes give candidates growing as n^2 (259,721 pairs at
10,000 images: 7 GiB peak; about 0.8 TB at 100,000). The JSON says which stages and image
size were used. Writes bench/results/memory.json and prints one line.

    nice -n 10 python bench/memory.py [--sizes 10000 100000] [--stages quality]
        [--side 64] [--pool DIR (reuse a pool generated before; DIR/data)]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SHARD = 1000


def child(dataset: str, out: str, stages: str) -> None:
    """Runs in the child: one curate run; prints its peak RSS and timings as JSON."""
    from clipaudit.curate.pipeline import CurateConfig, curate

    scoring_peak: list[int] = []

    def progress(done: int, total: int, _: int) -> None:
        if done == total:  # the last shard is written: what follows is decide
            scoring_peak.append(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)

    t0 = time.perf_counter()
    cfg = CurateConfig(dataset=dataset, out=out, stages=stages.split(","))
    stats = curate(cfg, progress=progress)
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    print(
        "RESULT "
        + json.dumps(
            {
                "peak_rss_mib": round(peak_kib / 1024, 1),
                "peak_rss_while_scoring_mib": round(scoring_peak[-1] / 1024, 1),
                "wall_s": round(time.perf_counter() - t0, 1),
                "input": stats["input"],
                "kept": stats["kept"],
                "adds_up": stats["adds_up"],
                "timings": stats["timings"],
            }
        )
    )


def subset(data: Path, n: int, into: Path) -> Path:
    """A folder holding links to the first n/SHARD shards of ``data``."""
    shards = sorted(data.glob("*.tar"))[: n // SHARD]
    if len(shards) * SHARD < n:
        raise SystemExit(f"the pool in {data} has {len(shards) * SHARD} samples, need {n}")
    into.mkdir(parents=True)
    for s in shards:
        (into / s.name).symlink_to(s.resolve())
    return into


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--stages", default="quality")
    ap.add_argument("--side", type=int, default=64)
    ap.add_argument("--pool", default=None, help="folder of a pool made before (has data/)")
    ap.add_argument("--child", nargs=3, metavar=("DATASET", "OUT", "STAGES"))
    ap.add_argument("--note", default=None, help="a remark stored in the JSON")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "memory.json"))
    args = ap.parse_args()
    if args.child:
        child(*args.child)
        return

    sizes = sorted(args.sizes)
    with tempfile.TemporaryDirectory(prefix="memory_bench_") as tmp:
        work = Path(tmp)
        gen_s = None
        if args.pool:
            pool = Path(args.pool)
        else:
            from clipaudit.world import write_world

            pool = work / "pool"
            t0 = time.perf_counter()
            rates = {"sdxl_watermark": 0.0, "watermarked": 0.0} if args.side < 256 else {}
            write_world(
                pool, n=sizes[-1], size=args.side, shard_size=SHARD, format="webdataset",
                rates=rates,
            )  # fmt: skip
            gen_s = round(time.perf_counter() - t0, 1)
        runs = {}
        for n in sizes:
            data = subset(pool / "data", n, work / f"data{n}")
            proc = subprocess.run(
                [sys.executable, __file__, "--child", str(data), str(work / f"run{n}"),
                 args.stages],
                capture_output=True, text=True, check=False,
                env={**os.environ, "CLIPAUDIT_OFFLINE": "1"},
            )  # fmt: skip
            if proc.returncode != 0:
                raise SystemExit(f"curating {n} failed:\n{proc.stderr[-3000:]}")
            line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))
            runs[str(n)] = json.loads(line[len("RESULT ") :])
            r = runs[str(n)]
            print(
                f"  {n}: peak {r['peak_rss_mib']} MiB (scoring {r['peak_rss_while_scoring_mib']})",
                file=sys.stderr,
            )
    small, large = runs[str(sizes[0])], runs[str(sizes[-1])]
    ratio = large["peak_rss_mib"] / small["peak_rss_mib"]
    scoring_ratio = large["peak_rss_while_scoring_mib"] / small["peak_rss_while_scoring_mib"]
    result = {
        "benchmark": "memory",
        "machine": f"{os.cpu_count()} CPU cores ({platform.machine()}), no GPU, shared",
        "engine": "local",
        "stages": args.stages,
        "image_side_px": args.side,
        "pool": "clipaudit world pool (seed 0), 1,000-sample webdataset shards; "
        + ("invisible watermarks off (need 256 px)" if args.side < 256 else "all plants"),
        "pool_generation_s": gen_s,
        "sizes": sizes,
        "runs": runs,
        "ratio": round(ratio, 3),
        "scoring_ratio": round(scoring_ratio, 3),
        "target_ratio": 1.2,
        "target_met": ratio <= 1.2,
        "note": args.note,
        "measured_with": "resource.getrusage(RUSAGE_SELF).ru_maxrss of a fresh child "
        "process per size (scoring and deciding)",
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"memory ({args.stages}, {args.side} px): "
        + ", ".join(f"{n:,} images {runs[str(n)]['peak_rss_mib']:.0f} MiB" for n in sizes)
        + f"; ratio {ratio:.2f} (target ≤ 1.2: {'met' if ratio <= 1.2 else 'missed'}; "
        f"scoring alone {scoring_ratio:.2f}) → {out}"
    )


if __name__ == "__main__":
    main()
