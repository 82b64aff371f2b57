"""``clipaudit judge`` end to end against scripted OpenAI-compatible servers on loopback.

* **Oracle**: a noisy world pool curated with the bundled model; the judge asks about the
  borderline samples (alignment within the pack's margin of its cut), capped by ``--budget``,
  and a server that answers from the world's planted truths (a perfect judge: "no" exactly
  for swapped captions) replies. Misaligned-caption precision / recall / F1 of the run before
  and after decide reads the verdicts, and the calls made against the budget.
* **Throughput**: a server that answers after 200 ms; ``--concurrency 16`` over ``--n-fast``
  samples; requests per second (the target is >= 60: the client is not the bottleneck).

Writes bench/results/judge.json.

    python bench/judge_bench.py [--pool 1000] [--budget 150] [--n-fast 400]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.judge_server import ScriptedServer


def _misaligned_prf(run: Path, labels: dict[str, Any]) -> dict[str, Any]:
    import pyarrow.parquet as pq

    from clipaudit.demo.truth import prf

    tp = fp = fn = 0
    for d in pq.read_table(run / "decisions.parquet", columns=["id", "reasons"]).to_pylist():
        said = bool({"low_alignment", "judge_unfaithful"} & set(d["reasons"] or []))
        want = "misaligned" in labels[d["id"]]["issues"]
        tp, fp, fn = tp + (said and want), fp + (said and not want), fn + (want and not said)
    return prf(tp, fp, fn)


def oracle(tmp: Path, n: int, budget: int) -> dict[str, Any]:
    import base64

    from clipaudit.curate.decide import decide_run
    from clipaudit.curate.pipeline import CurateConfig, curate
    from clipaudit.judge.run import run_judge
    from clipaudit.world import write_world

    write_world(tmp / "pool", split="pool", n=n, seed=11, format="webdataset")
    labels = {x["id"]: x for x in map(json.loads, (tmp / "pool" / "labels.jsonl").open())}
    curate(
        CurateConfig(
            dataset=str(tmp / "pool" / "data"),
            out=str(tmp / "run"),
            stages=["quality", "hashes", "alignment"],
            gates=False,
        )
    )
    before = _misaligned_prf(tmp / "run", labels)
    # The oracle knows each sample by the image bytes it is sent, and its caption from the
    # question: "no" exactly when the caption is one the pool swapped in.
    from clipaudit.data.decode import decode_sample
    from clipaudit.data.formats import open_dataset
    from clipaudit.judge.client import image_data_url

    ds = open_dataset(str(tmp / "pool" / "data"))
    by_image: dict[str, str] = {}
    for sh in ds.shards():
        for s in ds.read_shard(sh):
            im = decode_sample(s).image
            if im is not None:
                by_image[hashlib.sha256(image_data_url(im, 512)[1]).hexdigest()] = s.id

    def answer(body: dict[str, Any]) -> str:
        url = body["messages"][-1]["content"][1]["image_url"]["url"]
        sid = by_image.get(hashlib.sha256(base64.b64decode(url.split(",", 1)[1])).hexdigest())
        if sid is None:
            return '{"answer": "unknown"}'
        bad = "misaligned" in labels[sid]["issues"]
        return json.dumps({"answer": "no" if bad else "yes", "reason": "oracle"})

    with ScriptedServer(answer_for=answer) as srv:
        info = run_judge(
            tmp / "run", srv.url, "oracle", budget=budget, concurrency=8, api_key_env=""
        )
        calls = len(srv.requests)
    decide_run(tmp / "run", "default", write_kept=False, gates=False)
    after = _misaligned_prf(tmp / "run", labels)
    return {
        "pool": n,
        "budget": budget,
        "selected_borderline": info["selected"],
        "calls": calls,
        "within_budget": calls <= budget,
        "verdicts_ok": info["ok"],
        "misaligned_clip_only": before,
        "misaligned_with_judge": after,
    }


def throughput(tmp: Path, n: int) -> dict[str, Any]:
    from clipaudit.curate.pipeline import CurateConfig, curate
    from clipaudit.judge.run import run_judge
    from clipaudit.world import write_world

    write_world(tmp / "fast", split="eval-retrieval", n=n, seed=12, format="webdataset")
    curate(
        CurateConfig(
            dataset=str(tmp / "fast" / "data"),
            out=str(tmp / "fast-run"),
            stages=["quality"],
            gates=False,
        )
    )
    with ScriptedServer(delay=0.2) as srv:
        t0 = time.perf_counter()
        info = run_judge(
            tmp / "fast-run",
            srv.url,
            "slow",
            select_expr="decision != 'error'",
            rubric="watermark",
            budget=n,
            concurrency=16,
            api_key_env="",
        )
        wall = time.perf_counter() - t0
    return {
        "server_delay_s": 0.2,
        "concurrency": 16,
        "requests": info["asked"],
        "requests_per_s": info["requests_per_s"],
        "wall_s_with_setup": round(wall, 2),
        "target_met": (info["requests_per_s"] or 0) >= 60,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pool", type=int, default=1000)
    ap.add_argument("--budget", type=int, default=150)
    ap.add_argument("--n-fast", type=int, default=400)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="clipaudit-judge-bench-"))
    try:
        out = {
            "command": "python bench/judge_bench.py "
            f"--pool {args.pool} --budget {args.budget} --n-fast {args.n_fast}",
            "oracle": oracle(tmp, args.pool, args.budget),
            "throughput": throughput(tmp, args.n_fast),
            "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    path = Path(__file__).parent / "results" / "judge.json"
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
