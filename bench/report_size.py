"""Size and Chromium load time of the report of a 100,000-sample run.

Scoring 100,000 images takes about 20 minutes on the 2-core development machine, so the
large run is made by tiling a real run's decisions (``--run``, e.g. a ``clipaudit demo``
run) to ``--n`` rows: copies get new ids (``c0001-000123``), stats.json's counts are
recomputed from the tiled decisions, everything else is the real run's. Thumbnails come
from the source dataset (the original ids). Writes bench/results/report_size.json.

    python bench/report_size.py --run clipaudit-demo/run --n 100000
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from clipaudit.reports import write_report


def tile_run(src: Path, dst: Path, n: int) -> None:
    table = pq.read_table(src / "decisions.parquet")
    copies, rows = [], 0
    k = 0
    while rows < n:
        t = table.slice(0, min(table.num_rows, n - rows))
        if k:
            ids = [f"c{k:04d}-{i}" for i in t.column("id").to_pylist()]
            dups = [
                None if d is None else f"c{k:04d}-{d}" for d in t.column("duplicate_of").to_pylist()
            ]
            t = t.set_column(t.schema.get_field_index("id"), "id", pa.array(ids, pa.string()))
            t = t.set_column(
                t.schema.get_field_index("duplicate_of"),
                "duplicate_of",
                pa.array(dups, pa.string()),
            )
        copies.append(t)
        rows += t.num_rows
        k += 1
    tiled = pa.concat_tables(copies)
    dst.mkdir(parents=True)
    pq.write_table(tiled, dst / "decisions.parquet")
    for name in ("run.json", "gates.json"):
        if (src / name).is_file():
            shutil.copy(src / name, dst / name)
    stats = json.loads((src / "stats.json").read_text())
    pack_actions = (stats.get("pack_dump") or {}).get("actions") or {}
    dec = tiled.column("decision").to_pylist()
    reasons = tiled.column("reasons").to_pylist()
    c = Counter(dec)
    by, dropping = Counter[str](), Counter[str]()
    for d, rs in zip(dec, reasons, strict=True):
        for code in set(rs or []):
            by[code] += 1
            if d == "drop" and pack_actions.get(code, "drop") == "drop":
                dropping[code] += 1
    stats.update(
        input=len(dec),
        kept=c["keep"] + c["flag"],
        flagged=c["flag"],
        dropped=c["drop"],
        errored=c["error"],
        adds_up=True,
        by_reason=dict(sorted(by.items())),
        by_reason_dropping=dict(sorted(dropping.items())),
    )
    (dst / "stats.json").write_text(json.dumps(stats))


def load_seconds(html: Path) -> float:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium") or "chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=opts)
    try:
        driver.get(html.resolve().as_uri())
        ms = driver.execute_script(
            "const n = performance.getEntriesByType('navigation')[0]; return n.loadEventEnd;"
        )
    finally:
        driver.quit()
    return float(ms) / 1000


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", type=Path, required=True, help="A real curation run to tile.")
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        big = Path(tmp) / "run"
        tile_run(args.run, big, args.n)
        t0 = time.perf_counter()
        files = write_report([big], Path(tmp) / "report.html")
        write_s = time.perf_counter() - t0
        loads = [load_seconds(files.html) for _ in range(3)]
        result = {
            "samples": args.n,
            # Where the run lay on this machine says nothing to a reader: its size does.
            "tiled_from": f"a run of {_input_count(args.run)} samples (given as --run)",
            "html_bytes": files.html.stat().st_size,
            "json_bytes": files.json.stat().st_size,
            "csv_bytes": files.csv.stat().st_size,
            "ids_csv_bytes": files.ids_csv.stat().st_size if files.ids_csv else 0,
            "write_seconds": round(write_s, 2),
            "chromium_load_seconds": [round(x, 3) for x in loads],
            "targets": {"html_bytes_max": 10_000_000, "load_seconds_max": 2.0},
        }
    result["ok"] = result["html_bytes"] < 10_000_000 and max(loads) < 2.0
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "report_size.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


def _input_count(run: Path) -> object:
    try:
        return json.loads((Path(run) / "stats.json").read_text()).get("input", "?")
    except (OSError, ValueError):
        return "?"


if __name__ == "__main__":
    main()
