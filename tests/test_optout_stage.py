"""The optout curate stage: captured headers from the world pool, and the cache written by a
real fetch from servers on 127.0.0.1, turned into reason codes and coverage stats."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from PIL import Image

from clipaudit.curate.decide import decide_run
from clipaudit.curate.pipeline import CurateConfig, curate
from clipaudit.data import Sample, open_dataset, write_dataset
from clipaudit.errors import ClipauditError
from clipaudit.optout import FetchConfig, HttpSettings, fetch_samples
from tests.conftest import world_run
from tests.test_optout_support import Route, serve

NOALIGN = "name: noalign\nextends: default\nalignment:\n  min: null\n"


def _decisions(run: Path) -> dict[str, dict]:
    return {d["id"]: d for d in pq.read_table(run / "decisions.parquet").to_pylist()}


def test_world_pool_xrobots_plants_are_all_found(tmp_path: Path) -> None:
    rates = {"xrobots_noai": 0.3, "watermarked": 0.0, "sdxl_watermark": 0.0}
    pool = world_run(
        tmp_path, n=60, size=64, rates=rates, pack_yaml=NOALIGN, stages=["quality", "optout"]
    )
    stats = pool.stats
    planted = {x["id"] for x in pool.labels if "xrobots_noai" in x["issues"]}
    dec = _decisions(pool.run)
    found = {i for i, d in dec.items() if "optout_xrobots" in d["reasons"]}
    assert len(planted) >= 10
    assert found == planted  # recall 1.0 and precision 1.0: an exact signal
    for i in planted:
        assert dec[i]["optout_xrobots"] is True
        assert dec[i]["optout_xrobots_match"] in ("noai", "noimageai")
        assert dec[i]["decision"] == "drop"  # unlisted codes drop
    sig = stats["signals"]["optout"]
    assert sig["xrobots"] == {
        "checked": 60,
        "opted_out": len(planted),
        "unknown": 0,
        "not_checked": 0,
    }
    # No cache was given: the cached protocols were not checked, and nothing is "unknown".
    assert sig["robots"] == {
        "checked": 0,
        "opted_out": 0,
        "unknown": 0,
        "not_checked": 60,
        "unreachable": 0,
    }
    assert "optout_unknown" not in stats["by_reason"]


def _png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (80, 80), (120, 30, 200)).save(buf, "PNG")
    return buf.getvalue()


ROBOTS_A = "User-agent: GPTBot\nDisallow: /private/\n\nUser-agent: *\nAllow: /\n"
AITXT_A = "User-Agent: *\nDisallow: *.tif\n"
TDM_A = (
    '[{"location": "/reserved/", "tdm-reservation": 1, "tdm-policy": "https://a/pol"},'
    ' {"location": "/", "tdm-reservation": 0}]'
)


@pytest.fixture(scope="module")
def cached_run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    tmp = tmp_path_factory.mktemp("optout")
    routes_a: dict[str, Route] = {
        "/robots.txt": (200, ROBOTS_A, {}),
        "/ai.txt": (200, AITXT_A, {}),
        "/.well-known/tdmrep.json": (200, TDM_A, {}),
    }
    routes_b: dict[str, Route] = {
        p: (503, "busy", {}) for p in ("/robots.txt", "/ai.txt", "/.well-known/tdmrep.json")
    }
    routes_c: dict[str, Route] = {
        "/.well-known/tdmrep.json": (200, "{broken json", {})
    }  # robots, ai.txt: 404
    with serve(routes_a) as (a, _), serve(routes_b) as (b, _), serve(routes_c) as (c, _):
        html = '<meta name="robots" content="noimageai"><meta name="tdm-reservation" content="1">'
        rows: dict[str, tuple[str | None, dict[str, Any]]] = {
            "a_open": (f"{a}/img/1.jpg", {}),
            "a_private": (f"{a}/private/2.jpg", {}),
            "a_tif": (f"{a}/img/3.tif", {}),
            "a_reserved": (f"{a}/reserved/4.jpg", {}),
            "a_reserved_header0": (f"{a}/reserved/5.jpg", {"headers": {"TDM-Reservation": "0"}}),
            "a_meta": (f"{a}/img/6.jpg", {"headers": {}, "html": html}),
            "a_scoped": (f"{a}/img/7.jpg", {"headers": {"x-robots-tag": "googlebot: noai"}}),
            "b_down": (f"{b}/img/8.jpg", {}),
            "c_404": (f"{c}/img/9.jpg", {}),
            "no_url": (None, {}),
            "bad_url": ("javascript:alert(1)", {}),
        }
        samples = [
            Sample(k, _png(), f"a picture number {k}", u, m, "png") for k, (u, m) in rows.items()
        ]
        write_dataset(samples, tmp / "data", "webdataset", shard_size=100)
        ds = open_dataset(tmp / "data")
        cfg = FetchConfig(rate_per_host=1000, http=HttpSettings(timeout=1, deadline=2))
        summary = fetch_samples(ds, tmp / "cache", cfg)
    # An origin the fetch never saw: in the dataset after the fetch ran.
    samples.append(
        Sample("d_missing", _png(), "a picture never fetched", "https://d.example/x.jpg", {}, "png")
    )
    write_dataset(samples, tmp / "data2", "webdataset", shard_size=100)
    pack = tmp / "p.yaml"
    pack.write_text(NOALIGN + "actions:\n  optout_unknown: flag\n")
    run = tmp / "run"
    stats = curate(
        CurateConfig(
            dataset=str(tmp / "data2"),
            out=str(run),
            rules=str(pack),
            stages=["quality", "optout"],
            options={"optout_cache": str(tmp / "cache")},
        )
    )
    return {"tmp": tmp, "run": run, "stats": stats, "summary": summary, "a": a}


EXPECTED = {
    "a_open": [],
    "a_private": ["optout_robots"],
    "a_tif": ["optout_aitxt"],
    "a_reserved": ["optout_tdmrep"],
    "a_reserved_header0": [],  # the header's 0 overrides the file's 1
    "a_meta": ["optout_xrobots", "optout_tdmrep"],  # meta robots and meta tdm-reservation
    "a_scoped": [],  # googlebot's noai is not addressed to our agents
    "b_down": ["optout_robots", "optout_unknown"],  # 5xx: robots disallow, ai.txt/TDMRep unknown
    "c_404": [],  # 4xx robots/ai.txt allow; broken tdmrep.json reads as no reservation
    "no_url": [],
    "bad_url": ["optout_unknown"],
    "d_missing": ["optout_unknown"],
}


def test_fetch_summary(cached_run: dict) -> None:
    s = cached_run["summary"]
    assert (s["samples"], s["origins"], s["no_url"], s["bad_url"]) == (11, 3, 1, 1)
    assert s["outcomes"]["robots"] == {"fetched": 1, "unreachable": 1, "unavailable": 1}
    assert s["outcomes"]["tdmrep"] == {"fetched": 1, "unreachable": 1, "malformed": 1}


def test_reasons_per_sample_from_the_cache(cached_run: dict) -> None:
    dec = _decisions(cached_run["run"])
    got = {i: sorted(r for r in d["reasons"] if r.startswith("optout")) for i, d in dec.items()}
    assert got == {k: sorted(v) for k, v in EXPECTED.items()}
    assert dec["a_private"]["optout_robots_agents"] == "GPTBot"
    assert (
        dec["a_open"]["optout_robots"] == "allowed" and dec["a_open"]["optout_tdmrep"] == "allowed"
    )
    assert dec["a_reserved"]["optout_tdmrep_policy"] == "https://a/pol"
    assert dec["a_reserved"]["optout_tdmrep_source"] == "file"
    assert dec["a_reserved_header0"]["optout_tdmrep_source"] == "header"
    assert dec["a_meta"]["optout_tdmrep_source"] == "meta"
    assert dec["a_meta"]["optout_xrobots_match"] == "noimageai"
    assert dec["b_down"]["optout_robots_agents"] == "*"
    assert dec["b_down"]["optout_aitxt"] == "unknown"
    assert dec["d_missing"]["optout_robots"] == "unknown"
    assert dec["no_url"]["optout_robots"] is None and dec["no_url"]["optout_xrobots"] is None
    assert dec["d_missing"]["decision"] == "flag" and dec["a_private"]["decision"] == "drop"


def test_coverage_stats(cached_run: dict) -> None:
    sig = cached_run["stats"]["signals"]["optout"]
    # 12 rows: 1 without url; 2 unknown (bad url, origin not cached).
    # Of robots' two opt-outs, b_down's is its server's 5xx, not a stated reservation.
    assert sig["robots"] == {
        "checked": 9,
        "opted_out": 2,
        "unknown": 2,
        "not_checked": 1,
        "unreachable": 1,
    }
    assert sig["aitxt"] == {"checked": 8, "opted_out": 1, "unknown": 3, "not_checked": 1}
    assert sig["tdmrep"] == {"checked": 8, "opted_out": 2, "unknown": 3, "not_checked": 1}
    assert sig["xrobots"] == {"checked": 3, "opted_out": 1, "unknown": 0, "not_checked": 9}
    assert sig["any_opted_out"] == 5
    assert cached_run["stats"]["by_reason"]["optout_unknown"] == 3
    # The EU AI Act summary says so and names the agent tokens answered for.
    from clipaudit.reports import write_cards

    cards = {p.name: p.read_text() for p in write_cards(cached_run["run"])}
    summary = cards["EU_AI_ACT_SUMMARY.md"]
    assert "robots.txt could not be read: RFC 9309 treats that as disallow-all" in summary
    assert "- Agent tokens answered for: GPTBot" in summary


def test_redecide_with_other_agents_and_protocols(cached_run: dict) -> None:
    tmp = cached_run["tmp"]
    pack = tmp / "ccbot.yaml"
    pack.write_text(
        NOALIGN + "optout:\n  agents: [CCBot]\n  header_directives: [noai]\n"
        "  unknown_protocols: [robots]\nactions:\n  optout_unknown: keep\n"
    )
    stats = decide_run(cached_run["run"], str(pack), gates=False)
    dec = _decisions(cached_run["run"])
    assert "optout_robots" not in dec["a_private"]["reasons"]  # only GPTBot was disallowed
    assert "optout_robots" in dec["b_down"]["reasons"]  # unreachable denies every agent
    assert "optout_xrobots" not in dec["a_meta"]["reasons"]  # noimageai no longer counts
    assert "optout_unknown" not in dec["b_down"]["reasons"]  # robots is known there
    assert dec["d_missing"]["decision"] == "keep"
    assert stats["signals"]["optout"]["robots"]["opted_out"] == 1


def test_cache_option_must_be_a_folder(tmp_path: Path) -> None:
    write_dataset(
        [Sample("x", _png(), "a picture", "https://e.example/a.jpg")],
        tmp_path / "d",
        "webdataset",
        10,
    )
    cfg = CurateConfig(
        dataset=str(tmp_path / "d"),
        out=str(tmp_path / "run"),
        stages=["quality", "optout"],
        options={"optout_cache": str(tmp_path / "nope")},
    )
    with pytest.raises(ClipauditError, match=r"opt-out cache .*nope.* is not a folder"):
        curate(cfg)


def test_damaged_cache_files_read_as_unknown(cached_run: dict, tmp_path: Path) -> None:
    from clipaudit.curate.stages import StageContext
    from clipaudit.curate.stages.optout import OptoutStage
    from clipaudit.optout.cache import cache_path

    a = cached_run["a"]
    cache = tmp_path / "cache"
    cache.mkdir()
    cache_path(cache, a).write_text("{not json")
    stage = OptoutStage()
    stage.setup(StageContext(options={"optout_cache": str(cache)}))
    cols = stage.sample_columns(Sample("s", None, None, f"{a}/private/x.jpg", {"headers": 5}))
    assert cols["optout_robots"] == "unknown" and cols["optout_tdmrep"] == "unknown"
    assert cols["optout_xrobots"] is None
    cache_path(cache, a).write_text(
        json.dumps({"schema": 1, "origin": "https://other", "files": {}})
    )
    stage = OptoutStage()
    stage.setup(StageContext(options={"optout_cache": str(cache)}))
    assert stage.sample_columns(Sample("s", None, None, f"{a}/x.jpg"))["optout_robots"] == "unknown"
