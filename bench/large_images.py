"""Peak memory of curate on camera-sized photos: the batch's pixel budget on and off.

A batch used to close at ``--batch-size`` samples only, and the local engine holds
``--decode-threads`` + 1 batches decoded at once: 64 photos of 24 megapixels are 6 GB of
RGB a batch. A batch now also closes at ``--batch-megapixels`` (128) of declared pixels.
This bench makes ``--n`` photos of ``--width`` x ``--height`` (real photos from
``--photos`` scaled up, so the JPEGs hold real content; plain gradients where there are
none), curates them once per budget in a fresh child process with ``--stages`` and reads
the child's peak resident set (``ru_maxrss`` via ``getrusage(RUSAGE_CHILDREN)``). A budget
of 100,000 megapixels is the old behaviour (no image is that large). Writes
bench/results/large_images.json and prints one line per budget.

    python bench/large_images.py --photos ../shared/photos [--n 64] [--width 6000]
        [--height 4000] [--budgets 128 100000] [--stages quality,hashes]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

RESULTS = Path(__file__).parent / "results" / "large_images.json"


def make_photos(out: Path, n: int, size: tuple[int, int], photos: Path | None) -> None:
    """``n`` JPEGs (q85) with captions, from real photos scaled to ``size`` where there are
    any, else from seeded gradients with noise."""
    out.mkdir(parents=True)
    sources = sorted(photos.rglob("*.jpg")) if photos and photos.is_dir() else []
    rng = random.Random(0)
    picks = rng.sample(sources, min(n, len(sources))) if sources else []
    for i in range(n):
        if i < len(picks):
            im = Image.open(picks[i]).convert("RGB").resize(size, Image.Resampling.BILINEAR)
        else:
            g = np.random.default_rng(i)
            x = np.linspace(0, 255, size[0], dtype=np.float32)[None, :, None]
            base = np.broadcast_to(x, (size[1], size[0], 3)) * g.uniform(0.3, 1.0, 3)
            noise = g.normal(0, 8, (size[1], size[0], 3))
            im = Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8))
        im.save(out / f"{i:04d}.jpg", quality=85)
        (out / f"{i:04d}.txt").write_text(f"a photograph, number {i}")


def curate_once(data: Path, run: Path, stages: str, budget: int) -> dict[str, float]:
    """One curate in a child; its wall time and the peak resident set of it."""
    wrapper = (
        "import resource, subprocess, sys\n"
        "r = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
        "sys.stderr.write(r.stderr[-2000:])\n"
        "print(r.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
    )
    cmd = [
        sys.executable, "-m", "clipaudit", "curate", str(data), "--out", str(run),
        "--stages", stages, "--batch-megapixels", str(budget),
    ]  # fmt: skip
    t0 = time.perf_counter()
    r = subprocess.run(
        [sys.executable, "-c", wrapper, *cmd], capture_output=True, text=True, check=True
    )
    wall = time.perf_counter() - t0
    rc, peak_kib = r.stdout.split()
    if rc != "0":
        raise SystemExit(f"curate failed ({rc}): {r.stderr}")
    stats = json.loads((run / "stats.json").read_text())
    return {
        "wall_s": round(wall, 1),
        "peak_rss_mib": round(int(peak_kib) / 1024, 1),
        "input": stats["input"],
        "kept": stats["kept"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--photos", type=Path, default=None)
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--width", type=int, default=6000)
    ap.add_argument("--height", type=int, default=4000)
    ap.add_argument("--budgets", type=int, nargs="+", default=[128, 100_000])
    ap.add_argument("--stages", default="quality,hashes")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="clipaudit-large-") as tmp:
        data = Path(tmp) / "photos"
        t0 = time.perf_counter()
        make_photos(data, args.n, (args.width, args.height), args.photos)
        print(f"made {args.n} photos in {time.perf_counter() - t0:.0f} s", flush=True)
        for budget in args.budgets:
            got = curate_once(data, Path(tmp) / f"run-{budget}", args.stages, budget)
            rows.append({"batch_megapixels": budget, **got})
            print(f"budget {budget:>6} Mpx: {got}", flush=True)
    out = {
        "bench": "large_images",
        "command": "python bench/large_images.py "
        + " ".join(
            [
                "--photos ../shared/photos" if args.photos else "",
                f"--n {args.n} --width {args.width} --height {args.height}",
                "--budgets " + " ".join(map(str, args.budgets)),
                f"--stages {args.stages}",
            ]
        ).strip(),
        "images": {"n": args.n, "width": args.width, "height": args.height},
        "stages": args.stages,
        "batch_size": 64,
        "decode_threads": 2,
        "rows": rows,
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "load_average": [round(x, 1) for x in os.getloadavg()],
        },
        "peak_ratio_bounded_vs_unbounded": round(
            rows[0]["peak_rss_mib"] / rows[-1]["peak_rss_mib"], 3
        )
        if len(rows) > 1
        else None,
    }
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
