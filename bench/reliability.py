"""Reliability: rerun every hostile input, fault and bad configuration of the catalogue in
``tests/hostile/`` and count how each case ended.

Outcomes: ``ok`` (decoded and decided normally), ``reason`` (ended with the reason code that
names its problem), ``clear error`` (the run stopped with one ``error:`` sentence), ``crash``
(any other exception), ``hang`` (past its time limit), ``lost`` (a sample without a decision,
a kept dataset that disagrees, or a resumed run whose bytes differ). Writes
bench/results/reliability.json and bench/results/reliability.md (the README's table).

    python bench/reliability.py [--kill-trials 20] [--cli-kill-trials 3] [--only NAME ...]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the catalogue lives beside the tests

from tests.hostile import config, faults, inputs  # noqa: E402
from tests.hostile.runner import CATEGORIES, ClassResult  # noqa: E402

COLUMNS = ("ok", "reason", "clear_error", "crash", "hang", "lost")
HEADINGS = ("ok", "reason code", "clear error", "crash", "hang", "lost")


def markdown(rows: list[ClassResult]) -> str:
    head = "| kind | class of input or fault | cases | " + " | ".join(HEADINGS) + " | as expected |"
    lines = [head, "|" + "---|" * (len(HEADINGS) + 4)]
    for r in rows:
        d = r.to_dict()
        counts = " | ".join(str(d["outcomes"][c]) for c in COLUMNS)
        lines.append(
            f"| {r.kind} | {r.name} | {d['cases']} | {counts} | {d['as_expected']}/{d['cases']} |"
        )
    total = {c: sum(r.counts.get(c, 0) for r in rows) for c in CATEGORIES}
    n = sum(r.cases for r in rows)
    expected = sum(r.to_dict()["as_expected"] for r in rows)
    lines.append(
        f"| | **total** | **{n}** | "
        + " | ".join(f"**{total[c]}**" for c in COLUMNS)
        + f" | **{expected}/{n}** |"
    )
    return "\n".join(lines) + "\n"


def merged(previous: list[dict[str, Any]], fresh: list[ClassResult]) -> list[ClassResult]:
    """The committed table's rows with those run now: same class, its row replaced in place;
    a new class after the row its name extends ("…, through a proxy"), else before the kill
    trials (the table's last rows)."""
    now = {r.name: r for r in fresh}
    rows = [now.pop(d["class"]) if d["class"] in now else _row(d) for d in previous]
    for r in now.values():
        parent = [i for i, old in enumerate(rows) if r.name.startswith(old.name + ",")]
        kill = [i for i, old in enumerate(rows) if old.name.startswith("SIGKILL")]
        at = parent[-1] + 1 if parent else (kill[0] if kill else len(rows))
        rows.insert(at, r)
    return rows


def _row(d: dict[str, Any]) -> ClassResult:
    r = ClassResult(d["class"], d["kind"], d["cases"], seconds=d["seconds"], notes=d["notes"])
    r.counts.update({c: n for c, n in d["outcomes"].items() if n})
    r.unexpected = list(d["unexpected"])
    return r


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kill-trials", type=int, default=20)
    ap.add_argument("--cli-kill-trials", type=int, default=3)
    ap.add_argument(
        "--only",
        nargs="*",
        default=None,
        help="inputs, model-stages, config, writes, os-writes, optout, optout-proxy, judge, "
        "judge-proxy, kill, cli-kill",
    )
    ap.add_argument("--out", default=str(ROOT / "bench" / "results"))
    ap.add_argument(
        "--merge",
        action="store_true",
        help="keep the other classes of the table in --out: a class run now replaces its row, "
        "a new class goes before the kill trials",
    )
    args = ap.parse_args()
    os.environ.setdefault("CLIPAUDIT_OFFLINE", "1")
    wanted = set(
        args.only
        or [
            "inputs",
            "model-stages",
            "config",
            "writes",
            "os-writes",
            "optout",
            "optout-proxy",
            "judge",
            "judge-proxy",
            "kill",
            "cli-kill",
        ]
    )
    rows: list[ClassResult] = []
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="clipaudit-reliability-") as tmp:
        root = Path(tmp)
        steps = {
            "inputs": lambda: inputs.run_all_inputs(root / "inputs"),
            "model-stages": lambda: [inputs.run_images_all_stages(root / "model-stages")],
            "config": lambda: [config.run_packs(root / "packs"), config.run_model_specs()],
            "writes": lambda: [faults.write_error_trials(root / "writes")],
            "os-writes": lambda: [faults.real_write_errors(root / "os-writes")],
            "optout": lambda: [faults.optout_servers(root / "optout")],
            "optout-proxy": lambda: [faults.optout_servers(root / "optout-proxy", via_proxy=True)],
            "judge": lambda: [faults.judge_servers(root / "judge")],
            "judge-proxy": lambda: [faults.judge_servers(root / "judge-proxy", via_proxy=True)],
            "kill": lambda: [faults.sigkill_trials(root / "kill", args.kill_trials, seed=1)],
            "cli-kill": lambda: [
                faults.sigkill_trials(root / "cli-kill", args.cli_kill_trials, seed=2, via="cli")
            ],
        }
        for name, step in steps.items():
            if name not in wanted:
                continue
            (root / name).mkdir(parents=True, exist_ok=True)
            t = time.perf_counter()
            got = step()
            rows.extend(got)
            print(
                f"{name}: {sum(r.cases for r in got)} cases in {time.perf_counter() - t:.0f}s",
                flush=True,
            )
            for r in got:
                for u in r.unexpected:
                    print(f"  unexpected in {r.name}: {u}", flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    command = "python bench/reliability.py " + " ".join(sys.argv[1:])
    if args.merge and (out / "reliability.json").is_file():
        before = json.loads((out / "reliability.json").read_text())
        rows = merged(before["classes"], rows)
        command = f"{before['command']}; then {command}"
    result: dict[str, object] = {
        "command": command,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.python_version()}",
        "seconds": round(time.perf_counter() - t0, 1),
        "classes": [r.to_dict() for r in rows],
        "total": {
            "cases": sum(r.cases for r in rows),
            "outcomes": {c: sum(r.counts.get(c, 0) for r in rows) for c in CATEGORIES},
            "as_expected": sum(r.to_dict()["as_expected"] for r in rows),
        },
    }
    (out / "reliability.json").write_text(json.dumps(result, indent=2) + "\n")
    table = markdown(rows)
    notes = "".join(f"- {r.name}: {r.notes}\n" for r in rows if r.notes)
    (out / "reliability.md").write_text(table + ("\n" + notes if notes else ""))
    print(table)
    print(notes)
    bad = {c: sum(r.counts.get(c, 0) for r in rows) for c in CATEGORIES}
    sys.exit(1 if bad["crash"] or bad["hang"] or bad["lost"] else 0)


if __name__ == "__main__":
    main()
