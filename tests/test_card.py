from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from clipaudit.errors import ClipauditError
from clipaudit.reports import write_cards
from clipaudit.reports.cards import NOT_AVAILABLE, fmt_figure, resolve_pointer, size_category
from tests.report_support import build_run

LINK = re.compile(r"\[([^\]]+)\]\(([^)#]+)#([^)]+)\)")


@pytest.fixture(scope="module")
def cards(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    base = tmp_path_factory.getbasetemp() / "report-inputs"
    base.mkdir(exist_ok=True)
    run = build_run(base)
    out = tmp_path_factory.mktemp("cards")
    paths = write_cards(run, out)
    return run, {p.name: p.read_text() for p in paths}


def test_dataset_card_yaml_parses_and_counts_match(cards: tuple[Path, dict[str, str]]) -> None:
    run, docs = cards
    stats = json.loads((run / "stats.json").read_text())
    text = docs["README.md"]
    assert text.startswith("---\n")
    header = yaml.safe_load(text.split("---\n")[1])
    assert header["size_categories"] == [size_category(stats["kept"])] == ["n<1K"]
    # The world pool's licences cover part of the input only: the card must not pick one.
    assert stats["signals"]["sources"]["licence_coverage"] < 1 and header["license"] == "unknown"
    assert header["language"] == ["en"]
    assert f"# {NOT_AVAILABLE}: task_categories" in text
    assert f"[{stats['kept']}](" in text and f"[{stats['input']}](" in text


def test_every_figure_links_to_its_stats_value(cards: tuple[Path, dict[str, str]]) -> None:
    run, docs = cards
    stats = json.loads((run / "stats.json").read_text())
    assert set(docs) == {
        "README.md",
        "DATASHEET.md",
        "EU_AI_ACT_SUMMARY.md",
        "EU_AI_ACT_DOMAINS.csv",
    }
    for name, text in docs.items():
        if name.endswith(".csv"):  # counted from decisions.parquet, not stats.json figures
            continue
        links = LINK.findall(text)
        assert len(links) >= 8, name
        for shown, target, frag in links:
            assert target.endswith("stats.json")
            value = resolve_pointer(stats, frag)
            kind = "share" if shown.endswith("%") else "count"
            assert shown == fmt_figure(value, kind), (name, frag)
        assert NOT_AVAILABLE in text
        assert "makes no legal determination" in text


def test_removal_counts_and_sections(cards: tuple[Path, dict[str, str]]) -> None:
    run, docs = cards
    stats = json.loads((run / "stats.json").read_text())
    ai = docs["EU_AI_ACT_SUMMARY.md"]
    for heading in (
        "## 1. General information",
        "## 2. List of data sources",
        "### 3.1 Respect of reservation",
        "### 3.2 Removal of illegal content",
    ):
        assert heading in ai
    for code, n in stats["by_reason_dropping"].items():
        assert f"[{n}](../" in ai and f"#/by_reason_dropping/{code})" in ai
    sheet = docs["DATASHEET.md"]
    for heading in (
        "## Motivation",
        "## Composition",
        "## Collection Process",
        "## Preprocessing / Cleaning / Labeling",
        "## Uses",
        "## Distribution",
        "## Maintenance",
    ):
        assert heading in sheet


def test_not_a_run_is_one_error(tmp_path: Path) -> None:
    with pytest.raises(ClipauditError, match="is not a curation run"):
        write_cards(tmp_path)


def test_opt_outs_carried_in_the_files_are_reported_without_the_optout_stage(
    cards: tuple[Path, dict[str, str]],
) -> None:
    """The run read every file's XMP (rights stage) but fetched nothing (no optout stage):
    section 3.1 said only "not available" then, hiding the reservations it did honour."""
    run, docs = cards
    stats = json.loads((run / "stats.json").read_text())
    ai = docs["EU_AI_ACT_SUMMARY.md"]
    section = ai.split("### 3.1")[1].split("### 3.2")[0]
    assert f"robots.txt, ai.txt, TDMRep files, X-Robots-Tag): *{NOT_AVAILABLE}*" in section
    iptc = stats["signals"]["rights"]["optout_iptc"]
    tdm = stats["signals"]["rights"]["tdm_reservation_in_file"]
    assert (
        f"(rights stage, every sample read): PLUS Data Mining prohibiting AI training [{iptc}]("
        in section
    )
    assert f", TDMRep reservation [{tdm}](" in section
    assert f"C2PA training-and-data-mining assertions: *{NOT_AVAILABLE}*" in section
    # Every opt-out code that removed samples is listed, and nothing else.
    removed = {c: n for c, n in stats["by_reason_dropping"].items() if c.startswith("optout_")}
    for c, n in removed.items():
        assert f"Removed for `{c}`: [{n}](" in section
    assert section.count("Removed for") == len(removed)


def test_kept_structure_reading_errors_and_a_file_as_out(
    cards: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    """After `decide --no-kept` the card still said the kept samples were in kept/ (an
    earlier decision's, other counts); a reading error's action showed as "drop"; a file
    given as --out was a traceback."""
    import shutil

    run, docs = cards
    stats = json.loads((run / "stats.json").read_text())
    fmt = stats["kept_dataset"]["format"]
    assert f"The kept samples are in `kept/` in the `{fmt}` format" in docs["README.md"]
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    edited = {k: v for k, v in stats.items() if k != "kept_dataset"}
    edited["by_reason"] = {**stats["by_reason"], "decode_error": 2}
    (copy / "stats.json").write_text(json.dumps(edited))
    text = {p.name: p.read_text() for p in write_cards(copy, tmp_path / "cards")}["README.md"]
    assert "This decision wrote no kept dataset (`clipaudit decide --no-kept`)" in text
    assert "The kept samples are in" not in text
    row = next(x for x in text.splitlines() if x.startswith("| `decode_error` |"))
    assert row.split(" | ")[2] == "error"
    (tmp_path / "file").write_text("x")
    with pytest.raises(ClipauditError, match=r"--out '.*file' is a file; the cards need a folder"):
        write_cards(copy, tmp_path / "file")


def test_checks_that_did_not_run_are_not_reported_as_zero(
    cards: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    """A quality,hashes run's EU summary said "samples declared AI-generated: 0" and "Block
    lists … removed: 0", and a run without the opt-out cache said the pack "honours" robots,
    ai.txt and TDMRep although no sample was checked."""
    import shutil

    run, _ = cards
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    stats = json.loads((copy / "stats.json").read_text())
    sig = stats["signals"]
    sig["rights"] = {"computed": False}
    sig["c2pa"] = {"computed": False}
    sig["sources"] = {"computed": False}
    sig["optout"] = {
        p: {"checked": 0, "opted_out": 0, "unknown": 0, "not_checked": 40}
        for p in ("robots", "aitxt", "tdmrep")
    }
    stats["by_reason"].pop("ai_generated", None)
    stats["by_reason_dropping"].pop("blocked_source", None)
    (copy / "stats.json").write_text(json.dumps(stats))
    docs = {p.name: p.read_text() for p in write_cards(copy, tmp_path / "cards")}
    ai = docs["EU_AI_ACT_SUMMARY.md"]
    assert f"samples declared AI-generated: *{NOT_AVAILABLE}* (neither the rights" in ai
    assert f"Block lists (domains, urls, image hashes) removed: *{NOT_AVAILABLE}*" in ai
    assert "Protocols the pack honours" not in ai
    assert "**not checked for any sample** in this run: `aitxt`, `robots`, `tdmrep`" in ai
    assert f"Samples marked AI-generated (XMP / C2PA): *{NOT_AVAILABLE}*" in docs["README.md"]


def test_a_run_without_duplicates_or_of_clips_says_so_in_words(
    cards: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    """The datasheet read "duplicates dropped: ." where none were, and the EU summary called
    a run of video clips "photographs or rendered images"."""
    import shutil

    run, _ = cards
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    stats = json.loads((copy / "stats.json").read_text())
    for code in ("exact_duplicate", "near_duplicate", "semantic_duplicate"):
        stats["by_reason_dropping"].pop(code, None)
    stats["signals"]["video"] = {"videos": 27, "images": 0}
    (copy / "stats.json").write_text(json.dumps(stats))
    docs = {p.name: p.read_text() for p in write_cards(copy, tmp_path / "cards")}
    assert "duplicates dropped: none." in docs["DATASHEET.md"]
    ai = docs["EU_AI_ACT_SUMMARY.md"]
    assert "- Content types: video clips with natural-language captions" in ai
    assert "photographs" not in ai


def test_a_redecide_removes_the_cards_and_report_it_makes_stale(
    cards: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    """After `decide --rules strict` the run's cards still said "Rules pack: default" and
    linked figures that stats.json no longer held (kept 222 against 164)."""
    import shutil

    from clipaudit.curate.decide import decide_run
    from clipaudit.reports.render import write_report

    run, _ = cards
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    write_cards(copy, copy / "cards")
    write_report([copy], copy / "report.html")
    (copy / "notes.txt").write_text("mine")
    stats = decide_run(copy, "strict", write_kept=False, gates=False)
    assert stats["stale_documents_removed"] == [
        "report.html",
        "report.json",
        "report.csv",
        "report_ids.csv",
        "cards",
    ]
    assert not (copy / "cards").exists() and not (copy / "report.html").exists()
    assert (copy / "notes.txt").read_text() == "mine"  # only what report and card write
    again = decide_run(copy, "strict", write_kept=False, gates=False)
    assert "stale_documents_removed" not in again


def test_unrecognised_licences_and_a_run_without_a_model_are_said(
    cards: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    """6 CC-BY and 2 unrecognised licences read "coverage 80%" beside a list of 6; a run
    whose stages used no CLIP printed "model: None"."""
    import shutil

    run, _ = cards
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    stats = json.loads((copy / "stats.json").read_text())
    stats["signals"]["sources"].update(
        {"licences": {"CC-BY-4.0": 6}, "licence_unrecognised": 2, "licence_coverage": 0.8}
    )
    (copy / "stats.json").write_text(json.dumps(stats))
    record = json.loads((copy / "run.json").read_text())
    record["settings"]["model"] = None
    (copy / "run.json").write_text(json.dumps(record))
    sheet = {p.name: p.read_text() for p in write_cards(copy, tmp_path / "c")}["DATASHEET.md"]
    assert (
        "declared but not recognised as a known licence (left out of the list above): [2](" in sheet
    )
    assert "CLIP model: none (no stage of this run used one)" in sheet and "`None`" not in sheet


def test_eu_summary_lists_the_top_tenth_of_kept_domains_by_content_size(
    cards: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    """Section 2.3 listed the ten most frequent domains of the input, dropped samples
    included; the template asks for the top 10% of domains by the size of the content."""
    import shutil

    import pyarrow as pa
    import pyarrow.parquet as pq

    run, _ = cards
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    rows = [("keep", "big.example", 5_000_000)] * 2  # few samples, most bytes
    rows += [("flag", "many.example", 100_000)] * 10  # many samples, fewer bytes
    rows += [("keep", "=HYPERLINK(1).example", 3_000_000)]  # a formula-looking name
    rows += [("keep", f"d{i:02}.example", 1_000) for i in range(17)]
    rows += [("drop", "dropped.example", 90_000_000)] * 3  # dropped: not training content
    rows += [("keep", None, 7_000_000)] * 4  # 28 MB with no url
    decision, domain, size = zip(*rows, strict=True)
    pq.write_table(
        pa.table(
            {
                "id": [f"s{i}" for i in range(len(rows))],
                "decision": list(decision),
                "domain": list(domain),
                "file_bytes": pa.array(size, pa.int64()),
            }
        ),
        copy / "decisions.parquet",
    )
    docs = {p.name: p.read_text() for p in write_cards(copy, tmp_path / "c")}
    ai = docs["EU_AI_ACT_SUMMARY.md"]
    # 20 kept domains: the top 10% is 2, ranked by bytes (big 10 MB, then =HYPERLINK 3 MB).
    assert "20 distinct domains among the kept samples (4 kept samples have no url" in ai
    # 13 MB of the 14.017 MB with a domain; of all 42.017 MB kept, 30.9%.
    assert "the top 10% (2 domains) hold 92.7% of the image bytes of kept samples with a " in ai
    assert "domain (30.9% of all kept image bytes)" in ai
    assert "`big.example`: 2 samples, 10.0 MB" in ai
    assert "dropped.example" not in ai and "`many.example`" not in ai
    table = docs["EU_AI_ACT_DOMAINS.csv"].splitlines()
    assert table == [
        "rank,domain,kept_samples,kept_image_bytes,share_of_bytes",
        "1,big.example,2,10000000,0.713419",
        "2,'=HYPERLINK(1).example,1,3000000,0.214026",
    ]


def test_every_document_says_whether_alignment_was_checked(
    cards: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    """A run on real photos with a synthetic-world model left the alignment cut out; the
    cards repeated the pack's "drops weak alignment" and never said it was not checked."""
    import shutil

    run, _ = cards
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    stats = json.loads((copy / "stats.json").read_text())
    stats["thresholds"]["alignment_skipped"] = "not applied: the model was trained on shapes"
    stats["model_scores_not_applied"] = ["alignment", "dedup.keeper.alignment"]
    (copy / "stats.json").write_text(json.dumps(stats))
    docs = {p.name: p.read_text() for p in write_cards(copy, tmp_path / "c")}
    said = (
        "Image-caption alignment was **not checked**: the model was trained on shapes. Also "
        "left out, resting on the same scores: `dedup.keeper.alignment`."
    )
    for name in ("README.md", "DATASHEET.md", "EU_AI_ACT_SUMMARY.md"):
        assert said in docs[name], name
    stats["thresholds"].pop("alignment_skipped")
    stats["thresholds"].update({"alignment_scored": True, "alignment_min": 0.3})
    stats.pop("model_scores_not_applied")
    (copy / "stats.json").write_text(json.dumps(stats))
    docs = {p.name: p.read_text() for p in write_cards(copy, tmp_path / "c")}
    assert "Image-caption alignment was checked with" in docs["DATASHEET.md"]
    assert "cosine cut [0.3](" in docs["DATASHEET.md"]


def test_codes_outside_the_pack_vocabulary_have_their_meaning(
    cards: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    import shutil

    run, _ = cards
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    stats = json.loads((copy / "stats.json").read_text())
    stats["by_reason"].update({"duplicate_of_reference": 4, "route:people": 2})
    (copy / "stats.json").write_text(json.dumps(stats))
    card = {p.name: p.read_text() for p in write_cards(copy, tmp_path / "c")}["README.md"]
    assert "| `duplicate_of_reference` | a copy of a sample of a reference set given with" in card
    assert "| `route:people` | routed to 'people' by the pack's routes |" in card


def test_cards_name_the_detectors_and_versions_the_run_scored_with(
    cards: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    """A card a reader can reproduce from: each stage's weights hashes and detector
    versions, from run.json, escaped like any text of the run."""
    run, docs = cards
    record = json.loads((run / "run.json").read_text())
    prov = record["stage_provenance"]
    for name in ("README.md", "DATASHEET.md"):
        text = docs[name]
        assert "Detectors and versions" in text
        assert f"imagehash `{prov['hashes']['imagehash']}`" in text, name
        assert f"chash\\_weights\\_sha256 `{prov['hashes']['chash_weights_sha256']}`" in text
        for lib, version in record["versions"].items():
            assert f"{lib.replace('_', chr(92) + '_')} `{version}`" in text, (name, lib)
    # Text from run.json is data: a hostile value stays inside a code span.
    import shutil

    hostile = tmp_path / "run"
    shutil.copytree(run, hostile)
    record["stage_provenance"]["hashes"]["imagehash"] = "<script>x</script>`|"
    (hostile / "run.json").write_text(json.dumps(record))
    [card] = [p for p in write_cards(hostile, tmp_path / "out") if p.name == "README.md"]
    assert "imagehash `<script>x</script>'|`" in card.read_text()
