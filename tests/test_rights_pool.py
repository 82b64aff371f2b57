"""On a world pool, the exact rights plants are found: EXIF copyright, XMP PLUS
DataMining, stock-agency urls and non-commercial licences, each with recall ≥ 0.95 against
labels.jsonl, and the false positives counted. Re-deciding with block lists needs no
re-scoring."""

from __future__ import annotations

from pathlib import Path

import pytest

from clipaudit.curate.decide import decide_signals, load_signals
from clipaudit.curate.rundir import RunDir
from clipaudit.rules.schema import load_pack
from tests.conftest import WorldRun, WorldRuns

# planted issue → the reason code that must name it
PLANTS = {
    "exif_copyright": "copyright_notice",
    "xmp_prohibited": "optout_iptc",
    "stock_url": "copyright_risk_domain",
    "license_nc": "license_nc",
    "caption_copyright": "caption_copyright",
}
EXACT = ("exif_copyright", "xmp_prohibited", "stock_url", "license_nc")
RATES = {
    "exif_copyright": 0.10,
    "xmp_prohibited": 0.10,
    "stock_url": 0.10,
    "license_nc": 0.10,
    "caption_copyright": 0.05,
    "sdxl_watermark": 0.0,  # the slowest plant to make, and not this signal's
}
PACK = """name: rights-test
extends: default
alignment:
  min: null
actions:
  copyright_notice: flag
  caption_copyright: flag
  license_nd: flag
  blocked_source: drop
  c2pa_invalid: flag
  c2pa_unverifiable: flag
  rights_metadata_malformed: flag
"""


@pytest.fixture(scope="module")
def pool_run(world_runs: WorldRuns) -> WorldRun:
    return world_runs(
        "rights-pool",
        n=300,
        rates=RATES,
        pack_yaml=PACK,
        stages=["quality", "rights", "c2pa"],
        gates=False,
    )


def _reasons(run: Path) -> dict[str, list[str]]:
    import pyarrow.parquet as pq

    t = pq.read_table(run / "decisions.parquet", columns=["id", "reasons"])
    return dict(zip(t.column("id").to_pylist(), t.column("reasons").to_pylist(), strict=True))


def test_recall_and_false_positives(pool_run: WorldRun) -> None:
    reasons = _reasons(pool_run.run)
    assert len(reasons) == 300
    planted: dict[str, set[str]] = {issue: set() for issue in PLANTS}
    for row in pool_run.labels:
        for issue in row["issues"]:
            if issue in planted:
                planted[issue].add(row["id"])
    report = {}
    for issue, code in PLANTS.items():
        found = {i for i, r in reasons.items() if code in r}
        tp = len(found & planted[issue])
        recall = tp / len(planted[issue])
        report[issue] = (len(planted[issue]), tp, round(recall, 3), len(found - planted[issue]))
    print("\nissue: (planted, found, recall, false positives)", report)
    for issue in EXACT:
        n, tp, recall, fp = report[issue]
        assert n >= 15, f"too few {issue} plants to measure ({n})"
        assert recall >= 0.95, f"{issue}: recall {recall}"
        assert fp == 0, f"{issue}: {fp} false positives"
    assert report["caption_copyright"][2] >= 0.95 and report["caption_copyright"][3] == 0


def test_stats_tables(pool_run: WorldRun) -> None:
    stats = pool_run.stats
    labels = pool_run.labels
    sig = stats["signals"]
    n_stock = sum("stock_url" in r["issues"] for r in labels)
    n_nc = sum("license_nc" in r["issues"] for r in labels)
    assert sig["sources"]["on_lists"] == {"stock": n_stock, "news": 0}
    assert sig["sources"]["licence_flags"]["nc"] == n_nc
    assert sig["sources"]["licence_unrecognised"] == 0
    assert set(sig["sources"]["licences"]) <= {
        "CC-BY-4.0",
        "CC0-1.0",
        "CC-BY-SA-4.0",
        "CC-BY-NC-4.0",
        "CC-BY-NC-ND-4.0",
    }
    # Every sample has a url on one of the pool's ten hosts' registrable domains.
    assert sig["sources"]["with_domain"] == 300
    assert set(sig["sources"]["domains"]) >= {"example.co.uk", "example.org"}
    assert sig["rights"]["data_mining"] == {
        "PROHIBITED-AIMLTRAINING": sum("xmp_prohibited" in r["issues"] for r in labels)
    }
    assert sig["rights"]["metadata_errors"] == {}
    assert sig["c2pa"]["status"] == {"no_manifest": 300}
    assert sig["c2pa"]["ai_generated"] == 0
    assert stats["by_reason"].get("optout_c2pa", 0) == 0
    # The test pack's actions: the explicit opt-out (unlisted) drops, notices only flag.
    assert stats["by_reason_dropping"].get("optout_iptc") == stats["by_reason"]["optout_iptc"]
    assert "copyright_notice" not in stats["by_reason_dropping"]


def test_block_lists_redecide_without_rescoring(pool_run: WorldRun, tmp_path: Path) -> None:
    sig = load_signals(RunDir(pool_run.run))
    ids = list(sig["id"])
    by_domain = [i for i, d in zip(ids, sig["domain"], strict=True) if d == "example.io"]
    sha_row, url_row = 0, 1
    while sig["domain"][sha_row] == "example.io":
        sha_row += 1
    while sig["domain"][url_row] == "example.io" or url_row == sha_row:
        url_row += 1
    pack_file = tmp_path / "block.yaml"
    pack_file.write_text(
        f"name: block\nextends: {pool_run.pack}\nsources:\n"
        "  block_domains: [example.io]\n"
        f"  block_sha256: ['{sig['image_sha256'][sha_row]}']\n"
        f"  block_urls: ['{sig['url_norm'][url_row]}']\n",
        encoding="utf-8",
    )
    table, stats = decide_signals(sig, load_pack(str(pack_file)), None)
    blocked = {
        i
        for i, r in zip(
            table.column("id").to_pylist(), table.column("reasons").to_pylist(), strict=True
        )
        if "blocked_source" in r
    }
    # An exact duplicate shares its original's bytes, so the sha256 may name two rows.
    same_bytes = {
        i
        for i, h in zip(ids, sig["image_sha256"], strict=True)
        if h == sig["image_sha256"][sha_row]
    }
    assert blocked == set(by_domain) | same_bytes | {ids[url_row]}
    assert stats["by_reason_dropping"]["blocked_source"] == len(blocked)
