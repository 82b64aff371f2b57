"""Decide at crawl scale: wall time and peak memory of the sharded decide against n.

Two kinds of input, both from ``clipaudit.world.scale`` with planted exact (1%) and near
(2%) copies:

- ``--sim N ...``: a scored run written directly (signal shards, no images), decided with
  the default pack apart from the image-size floor (32 px). ``--sim-thumbs planted`` stores
  thumbnails only for the planted copies and their originals (10^7 thumbnails are 30 GB);
  kept-set writing is skipped (there are no images).
- ``--pool N ...``: a parquet pool of 48-px JPEGs, curated end to end with
  ``--stages quality,hashes``; then decided again alone, so decide's own peak is measured.

Each decide runs in a fresh child process; its peak resident set is ``ru_maxrss`` of the
child and of the map workers it started (``RUSAGE_CHILDREN`` in the child). Recall and
precision are counted against ``planted.parquet``: a planted copy is found when it and its
original end up with the same keeper; a duplicate call is precise when the two samples
really share an original. Writes bench/results/decide_scale.json (merged with earlier
sizes) and prints one line per size.

    nice -n 10 python bench/decide_scale.py --sim 100000 1000000 [--pool 100000] [--dir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

PACK = "name: scale\nextends: default\nquality:\n  min_side: 32\n"
RESULTS = Path(__file__).parent / "results" / "decide_scale.json"


def child_decide(run: str, pack: str, write_kept: bool) -> None:
    """In the child: decide once; print walls, peaks and the counts as JSON."""
    import resource

    from clipaudit.curate.decide import decide_run

    t0 = time.perf_counter()
    stats = decide_run(run, pack, write_kept=write_kept, gates=write_kept)
    wall = time.perf_counter() - t0
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    phases = json.loads((Path(run) / "phases.json").read_text())
    out = {
        "decide_wall_s": round(wall, 1),
        "decide_peak_rss_mib": round(max(own, kids), 1),
        "driver_peak_rss_mib": round(own, 1),
        "worker_peak_rss_mib": round(kids, 1),
        "phases": phases["phases"],
        "workers": phases["workers"],
        "input": stats["input"],
        "dropped": stats["dropped"],
        "duplicate_search": stats.get("duplicate_search"),
    }
    print("RESULT " + json.dumps(out))


def child_curate(data: str, run: str, pack: str) -> None:
    from clipaudit.curate.pipeline import CurateConfig, curate

    t0 = time.perf_counter()
    stats = curate(CurateConfig(dataset=data, out=run, stages=["quality", "hashes"], rules=pack))
    t = stats["timings"]
    print(
        "RESULT "
        + json.dumps(
            {
                "wall_s": round(time.perf_counter() - t0, 1),
                "scoring_wall_s": t["scoring_wall"],
                "decide_wall_s": t["decide_wall"],
            }
        )
    )


def _child(*args: str) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", *args]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"child failed: {' '.join(cmd)}\n{r.stderr[-3000:]}")
    line = next(x for x in r.stdout.splitlines() if x.startswith("RESULT "))
    return dict(json.loads(line[len("RESULT ") :]))


def truth(out: Path) -> dict[str, Any]:
    """Recall of planted copies and precision of duplicate calls, from the decisions."""
    import pyarrow.parquet as pq

    dec = pq.read_table(out / "run" / "decisions.parquet", columns=["id", "duplicate_of"])
    ids = dec.column("id").to_pylist()
    dup = dict(zip(ids, dec.column("duplicate_of").to_pylist(), strict=True))
    planted = pq.read_table(out / "planted.parquet").to_pylist()
    family = {p["id"]: p["original"] for p in planted}

    def root(i: str) -> str:
        return dup[i] or i

    by_kind: dict[str, list[int]] = {}
    for p in planted:
        hit = root(p["id"]) == root(p["original"])
        by_kind.setdefault(p["kind"], []).append(int(hit))
    calls = [(i, d) for i, d in dup.items() if d is not None]
    right = sum(family.get(i, i) == family.get(d, d) for i, d in calls)
    return {
        "planted": len(planted),
        "recall": {k: round(sum(v) / len(v), 4) for k, v in sorted(by_kind.items())},
        "duplicate_calls": len(calls),
        "precision": round(right / len(calls), 4) if calls else None,
    }


def bench_sim(n: int, root: Path, thumbs: str) -> dict[str, Any]:
    from clipaudit.world.scale import write_signal_run

    out = root / f"sim-{n}"
    t0 = time.perf_counter()
    if not (out / "planted.parquet").is_file():
        write_signal_run(out, n, thumbs=thumbs)
    gen = time.perf_counter() - t0
    (out / "scale.yaml").write_text(PACK)
    res = _child("decide", str(out / "run"), str(out / "scale.yaml"), "0")
    return {
        "kind": "simulated signals",
        "n": n,
        "thumbs": thumbs,
        "generate_s": round(gen, 1),
        **res,
        "truth": truth(out),
    }


def scoring_wall_from_files(run: Path) -> dict[str, Any]:
    """A finished run's scoring wall read off its files: run.json is written first, each
    shard's marker last; for a run whose curate was not timed by this script."""
    start = (run / "run.json").stat().st_mtime
    end = max(p.stat().st_mtime for p in (run / "markers").glob("*.done"))
    return {"scoring_wall_s": round(end - start, 1), "how": "run.json to the last marker"}


def bench_pool(n: int, root: Path, rescore: bool = True) -> dict[str, Any]:
    from clipaudit.world.scale import write_scale_pool

    out = root / f"pool-{n}"
    if not (out / "planted.parquet").is_file():
        write_scale_pool(out, n)
    (out / "scale.yaml").write_text(PACK)
    if rescore or not (out / "run" / "markers").is_dir():
        shutil.rmtree(out / "run", ignore_errors=True)
        cur = _child("curate", str(out / "data"), str(out / "run"), str(out / "scale.yaml"))
    else:
        cur = scoring_wall_from_files(out / "run")
        shutil.rmtree(out / "run" / ".decide", ignore_errors=True)
    res = _child("decide", str(out / "run"), str(out / "scale.yaml"), "1")
    return {
        "kind": "48-px JPEG pool, curate --stages quality,hashes",
        "n": n,
        "curate": cur,
        **res,
        "decide_over_scoring": round(res["decide_wall_s"] / cur["scoring_wall_s"], 3),
        "truth": truth(out),
    }


def bench_world(pool: Path | None, n: int, root: Path, rescore: bool = True) -> dict[str, Any]:
    """A world pool's first n samples (1,000-sample shards, linked), curated with
    quality,hashes and the default pack, then decided again alone (``rescore=False``: the
    scored run already in ``root`` is decided again, its scoring wall read off its files)."""
    data = root / f"world-{n}" / "data"
    out = root / f"world-{n}"
    if not rescore and (out / "run" / "markers").is_dir():
        cur = scoring_wall_from_files(out / "run")
    else:
        if pool is None:
            raise SystemExit("--world POOL is needed to score a world run")
        if not data.is_dir():
            data.mkdir(parents=True)
            for tar in sorted((pool / "data").glob("*.tar"))[: n // 1000]:
                (data / tar.name).symlink_to(tar)
        shutil.rmtree(out / "run", ignore_errors=True)
        cur = _child("curate", str(data), str(out / "run"), "default")
    res = _child("decide", str(out / "run"), "default", "1")
    return {
        "kind": "world pool (64 px), curate --stages quality,hashes, default pack",
        "n": n,
        "curate": cur,
        **res,
        "decide_over_scoring": round(res["decide_wall_s"] / cur["scoring_wall_s"], 3),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sim", type=int, nargs="*", default=[])
    ap.add_argument("--sim-thumbs", default="all", choices=["all", "planted"])
    ap.add_argument("--pool", type=int, nargs="*", default=[])
    ap.add_argument(
        "--pool-keep-scores",
        action="store_true",
        help="reuse a scored pool run in --dir (its scoring wall read off its files)",
    )
    ap.add_argument(
        "--world", default=None, help="a world pool (clipaudit world, 1,000-sample shards)"
    )
    ap.add_argument("--world-sizes", type=int, nargs="*", default=[])
    ap.add_argument(
        "--world-keep-scores",
        action="store_true",
        help="decide the scored world runs in --dir again (scoring wall read off their files)",
    )
    ap.add_argument("--dir", default=None, help="keep inputs here (reused when present)")
    args = ap.parse_args()
    root = Path(args.dir or tempfile.mkdtemp(prefix="decide-scale-"))
    results = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {"runs": {}}
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    for n in args.sim:
        r = bench_sim(n, root, args.sim_thumbs)
        results["runs"][f"sim-{n}-{args.sim_thumbs}"] = {**r, "machine": machine}
        print(json.dumps({k: r[k] for k in ("n", "decide_wall_s", "decide_peak_rss_mib", "truth")}))
    for n in args.pool:
        r = bench_pool(n, root, rescore=not args.pool_keep_scores)
        results["runs"][f"pool-{n}"] = {**r, "machine": machine}
        print(
            json.dumps(
                {k: r[k] for k in ("n", "curate", "decide_wall_s", "decide_peak_rss_mib", "truth")}
            )
        )
    for n in args.world_sizes:
        r = bench_world(
            Path(args.world) if args.world else None, n, root, not args.world_keep_scores
        )
        results["runs"][f"world-{n}"] = {**r, "machine": machine}
        print(
            json.dumps({k: r[k] for k in ("n", "curate", "decide_wall_s", "decide_peak_rss_mib")})
        )
    sizes = [results["runs"].get(f"world-{n}") for n in (10_000, 100_000)]
    if all(sizes):
        a, b = (r["decide_peak_rss_mib"] for r in sizes if r)
        results["world_peak_ratio_1e5_over_1e4"] = round(b / a, 3)
    sims = [results["runs"].get(f"sim-{n}-all") for n in (100_000, 1_000_000)]
    if all(sims):
        a, b = (r["decide_peak_rss_mib"] for r in sims if r)
        results["sim_peak_ratio_1e6_over_1e5"] = round(b / a, 3)
    command = " ".join(sys.argv[1:]).replace(str(root), "DIR")
    if args.world:  # a pool on this machine: named as the docs name it
        command = command.replace(args.world, "POOL")
    results["command"] = "python bench/decide_scale.py " + command
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    if args.dir is None:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        if sys.argv[2] == "decide":
            child_decide(sys.argv[3], sys.argv[4], sys.argv[5] == "1")
        else:
            child_curate(sys.argv[3], sys.argv[4], sys.argv[5])
    else:
        main()
