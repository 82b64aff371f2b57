"""Ray overhead: the same curate run under ``--engine local`` and ``--engine ray`` here.

A world pool (256-px JPEGs) is curated with the stages ``quality,hashes,alignment`` and the
bundled model, once per engine, each in a fresh child process (imports, model loads and,
for ray, starting a local Ray instance and its actor all count). The run folders must be
byte-identical (decisions.parquet, kept dataset, signals, embeddings): the benchmark fails
otherwise. Writes bench/results/ray_overhead.json and prints one line.

    nice -n 10 python bench/ray_overhead.py [--n 2000] [--shard-size 250]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STAGES = "quality,hashes,alignment"


def child(dataset: str, out: str, engine: str) -> None:
    """Runs in the child process: one curate run, its timings as JSON on stdout."""
    from clipaudit.curate.pipeline import CurateConfig, curate

    t0 = time.perf_counter()
    stats = curate(CurateConfig(dataset=dataset, out=out, stages=STAGES.split(","), engine=engine))
    stats["timings"]["curate_call"] = round(time.perf_counter() - t0, 3)
    print("RESULT " + json.dumps(stats["timings"]))


def run_engine(dataset: Path, out: Path, engine: str) -> dict[str, float]:
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, __file__, "--child", engine, str(dataset), str(out)],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "CLIPAUDIT_OFFLINE": "1"},
    )
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{engine} run failed:\n{proc.stderr[-3000:]}")
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))
    timings = json.loads(line[len("RESULT ") :])
    timings["process_wall"] = round(wall, 3)
    return timings


def tree_bytes(root: Path) -> dict[str, bytes]:
    files = sorted(p for p in root.rglob("*") if p.is_file())
    return {str(p.relative_to(root)): p.read_bytes() for p in files}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--shard-size", type=int, default=250)
    ap.add_argument("--child", nargs=3, metavar=("ENGINE", "DATASET", "OUT"))
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "ray_overhead.json"))
    args = ap.parse_args()
    if args.child:
        engine, dataset, out = args.child
        child(dataset, out, engine)
        return

    from clipaudit.world import write_world

    with tempfile.TemporaryDirectory(prefix="ray_overhead_") as tmp:
        work = Path(tmp)
        write_world(work / "w", n=args.n, format="webdataset", shard_size=args.shard_size)
        load_before = os.getloadavg()[0]
        local = run_engine(work / "w" / "data", work / "local", "local")
        ray = run_engine(work / "w" / "data", work / "ray", "ray")
        a, b = tree_bytes(work / "local"), tree_bytes(work / "ray")
        differing = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
        if differing:
            raise SystemExit(f"the engines' run folders differ: {differing[:5]}")
    import ray as ray_pkg

    result = {
        "benchmark": "ray_overhead",
        "machine": f"{os.cpu_count()} CPU cores ({platform.machine()}), no GPU; shared with "
        "other jobs (load average before the runs below)",
        "load_average_before": round(load_before, 2),
        "ray_version": ray_pkg.__version__,
        "n": args.n,
        "shards": -(-args.n // args.shard_size),
        "stages": STAGES,
        "model": "bundled:world-clip",
        "identical_run_folders": True,
        "files_compared": len(a),
        "local": local,
        "ray": ray,
        "ratio_process_wall": round(ray["process_wall"] / local["process_wall"], 3),
        "ratio_scoring_wall": round(ray["scoring_wall"] / local["scoring_wall"], 3),
        "ray_start_seconds": round(ray["scoring_wall"] - ray["ray_scoring_wall"], 3),
        "ray_actor_setup_seconds": ray.get("ray_actor_setup"),
        "note": "ray scoring_wall = starting the local Ray instance (ray_start_seconds) + "
        "ray_scoring_wall, which runs from the first shard asked to the last one written and "
        "includes the actors' start-up (imports, dataset open, model load: "
        "ray_actor_setup_seconds, summed over actors). The driver also loads the model once "
        "for the run's provenance record, as the local engine does.",
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"ray_overhead n={args.n}: local {local['process_wall']:.1f} s, ray "
        f"{ray['process_wall']:.1f} s (x{result['ratio_process_wall']:.2f}; scoring "
        f"x{result['ratio_scoring_wall']:.2f}, Ray start {result['ray_start_seconds']:.1f} s, "
        f"actor set-up {result['ray_actor_setup_seconds'] or 0:.1f} s); "
        f"run folders byte-identical → {out}"
    )


if __name__ == "__main__":
    main()
