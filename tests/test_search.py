"""Semantic search, vector indexes and routes over curated world runs (search/)."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from clipaudit.curate.decide import decide_run
from clipaudit.errors import ClipauditError
from clipaudit.search.index import build_index
from clipaudit.search.query import (
    check_model,
    embed_image,
    embed_text,
    open_searchable,
    position_of,
    search,
)
from tests.conftest import WorldRun, cli_batch, world_run


def _run(tmp: Path, split: str, n: int, seed: int, rules: str) -> WorldRun:
    return world_run(
        tmp,
        split=split,
        n=n,
        seed=seed,
        shard_size=100,
        rules=rules,
        stages=["quality", "hashes", "alignment"],
        gates=False,
    )


@pytest.fixture(scope="module")
def objects(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, dict]]:
    w = _run(tmp_path_factory.mktemp("objects"), "eval-objects", 384, 7, "keep-all")
    return w.run, {i: x["truth"]["objects"][0] for i, x in w.labels_by_id().items()}


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict]]:
    w = _run(tmp_path_factory.mktemp("pool"), "pool", 300, 11, "world-routes")
    return w.run, w.labels


def test_text_search_finds_the_colour_and_shape(objects: tuple[Path, dict]) -> None:
    run, truth = objects
    s = open_searchable(run)  # no index: exact search over the run's embeddings
    precisions = []
    for q, (color, shape) in {
        "a red circle": ("red", "circle"),
        "a blue star": ("blue", "star"),
        "a green triangle": ("green", "triangle"),
        "a yellow hexagon": ("yellow", "hexagon"),
    }.items():
        hits = search(s, embed_text(s, q), k=5)
        assert [h.rank for h in hits] == [1, 2, 3, 4, 5]
        assert all(a.score >= b.score for a, b in itertools.pairwise(hits))
        precisions.append(
            np.mean([truth[h.id]["color"] == color and truth[h.id]["shape"] == shape for h in hits])
        )
    assert np.mean(precisions) >= 0.9, precisions


def test_index_matches_exact_search_and_keeps_ids(objects: tuple[Path, dict]) -> None:
    run, _ = objects
    info = build_index(run)
    assert info["count"] == 384 and info["kind"] == "flat" and info["model"] == "bundled:world-clip"
    rows = pq.read_table(run / "index" / "rows.parquet")
    dec = pq.read_table(run / "decisions.parquet", columns=["id", "caption_chars"])
    # Rows carry the decision table's values for the same id (joined on id, not position).
    by_id = dict(
        zip(dec.column("id").to_pylist(), dec.column("caption_chars").to_pylist(), strict=True)
    )
    assert all(
        by_id[i] == c
        for i, c in zip(
            rows.column("id").to_pylist(), rows.column("caption_chars").to_pylist(), strict=True
        )
    )
    assert rows.column("caption").to_pylist()[0]  # the metadata's caption joined in
    indexed = open_searchable(run)  # now finds run/index
    assert indexed.info["kind"] == "flat"
    exact = open_searchable(run / "index")
    q = embed_text(indexed, "a purple diamond")
    a = search(indexed, q, k=10)
    b = search(exact, q, k=10)
    assert [h.id for h in a] == [h.id for h in b]
    assert np.allclose([h.score for h in a], [h.score for h in b], atol=1e-5)


def test_where_filters_before_the_vector_search(objects: tuple[Path, dict]) -> None:
    run, _truth = objects
    s = open_searchable(run)
    hits = search(s, embed_text(s, "a red circle"), k=10, where="caption_chars > 30")
    assert len(hits) == 10
    cap = {h.id: h.columns["caption"] for h in hits}
    assert all(len(c) > 30 for c in cap.values())
    none = search(s, embed_text(s, "a red circle"), k=10, where="decision = 'drop'")
    assert none == []  # keep-all drops nothing
    # Through the CLI an empty answer is said (it printed nothing and exited 0).
    from typer.testing import CliRunner

    from clipaudit.cli import app

    done = CliRunner().invoke(
        app, ["search", str(run), "a red circle", "--where", "decision = 'drop'", "--json"]
    )
    assert done.exit_code == 0, done.output
    assert done.stdout == ""
    assert "no result: no sample passes --where \"decision = 'drop'\"." in done.stderr


def test_like_returns_the_samples_own_copies_first(pool: tuple[Path, list[dict]]) -> None:
    run, labels = pool
    decide_run(run, "world-routes", write_kept=False, gates=False)
    copies: dict[str, list[str]] = {}
    for x in labels:
        if x.get("duplicate_of"):
            copies.setdefault(x["duplicate_of"], []).append(x["id"])
    assert len(copies) >= 10
    s = open_searchable(run)
    first, by_vector = [], []
    for orig, cs in copies.items():
        at = position_of(s, orig)
        query = s.vector_of(np.array([at]))[0]
        hits = search(s, query, k=len(cs), exclude=at, copies_first=True)
        assert orig not in [h.id for h in hits]
        first.append(set(cs) <= {h.id for h in hits})
        plain = search(s, query, k=len(cs), exclude=at)
        by_vector.append(set(cs) <= {h.id for h in plain})
    # Decide's duplicate groups come first; the embeddings alone put most copies first too.
    assert np.mean(first) >= 0.95, np.mean(first)
    assert np.mean(by_vector) >= 0.8, np.mean(by_vector)
    # Collapsing: one result per duplicate group.
    orig = next(o for o, cs in copies.items() if len(cs) >= 1)
    at = position_of(s, orig)
    plain = search(s, s.vector_of(np.array([at]))[0], k=5)
    collapsed = search(s, s.vector_of(np.array([at]))[0], k=5, collapse=True)
    groups = [h.columns["duplicate_of"] or h.id for h in collapsed]
    assert len(groups) == len(set(groups)) == 5
    assert plain[0].id == collapsed[0].id


def test_routes_label_flag_and_split(pool: tuple[Path, list[dict]]) -> None:
    run, labels = pool
    stats = decide_run(run, "world-routes", split_by_route=True, gates=False)
    truth = {x["id"]: x["truth"] for x in labels}
    dec = pq.read_table(run / "decisions.parquet").to_pylist()
    wm_hit = [d for d in dec if d["route"] == "watermark"]
    people_hit = [d for d in dec if d["route"] == "people"]
    wm_true = [i for i, t in truth.items() if t.get("watermark")]
    assert wm_hit and people_hit
    prec = np.mean([truth[d["id"]].get("watermark") is not None for d in wm_hit])
    rec = np.mean([i in {d["id"] for d in wm_hit} for i in wm_true])
    # The pool is 10% watermarked: the bundled model's margin (AUROC ~0.97) finds nearly
    # all of them, at about one clean scene for each marked one (bench/search_world.py).
    assert rec >= 0.9 and prec >= 0.45, (prec, rec)
    assert np.mean([truth[d["id"]]["kind"] == "person" for d in people_hit]) >= 0.9
    # The watermark route flags (its reason code), people only labels.
    for d in wm_hit:
        assert "route:watermark" in d["reasons"]
        assert d["decision"] in ("flag", "drop", "error")
    assert all("route:people" not in d["reasons"] for d in dec)
    assert all(isinstance(d["route_score_people"], float) for d in dec if d["error"] is None)
    assert stats["routes"]["watermark"]["samples"] == len(wm_hit)
    assert stats["routes"]["people"]["samples"] == len(people_hit)
    kept_people = {d["id"] for d in people_hit if d["decision"] in ("keep", "flag")}
    assert stats["kept_routes"]["people"]["samples"] == len(kept_people)
    assert (run / "kept_routes" / "people").is_dir()
    # The report shows the routes: a table and a gallery per route, ranked by score.
    from clipaudit.reports.render import write_report

    files = write_report([run], run / "r.html")
    html = Path(files.html).read_text()
    assert 'id="s0-routes"' in html and "<h4>people (" in html and "<h4>watermark (" in html
    section = json.loads(Path(files.json).read_text())["sections"][0]
    shown = {r["name"]: r["shown"] for r in section["routes"]}
    assert set(shown["people"]) <= {d["id"] for d in people_hit} and shown["people"]
    top = max(people_hit, key=lambda d: d["route_score_people"])
    assert shown["people"][0] == top["id"]
    # Re-deciding loads no model: the phrases' embeddings are cached in the run.
    assert (run / "route_phrases.parquet").is_file()
    code = (
        "import sys, json; from clipaudit.curate.decide import decide_run; "
        f"decide_run({str(run)!r}, 'world-routes', write_kept=False, gates=False); "
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith(('torch', 'open_clip')))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
    # A later decide that writes kept/ without --split-by-route removes the route datasets,
    # which belonged to the earlier decisions (they survived and contradicted the run).
    decide_run(run, "world-routes", gates=False)
    assert not (run / "kept_routes").exists() and (run / "kept").is_dir()


def test_where_can_select_a_route(pool: tuple[Path, list[dict]]) -> None:
    run, _ = pool
    decide_run(run, "world-routes", write_kept=False, gates=False)
    s = open_searchable(run)
    hits = search(s, embed_text(s, "a doctor"), k=5, where="route = 'people'")
    assert len(hits) == 5 and all(h.columns["route"] == "people" for h in hits)
    flagged = search(s, embed_text(s, "a circle"), k=50, where="'route:watermark' in reasons")
    assert flagged and all("route:watermark" in h.columns["reasons"] for h in flagged)


def test_lancedb_export_opens_and_searches_with_lancedb_itself(
    pool: tuple[Path, list[dict]], tmp_path: Path
) -> None:
    lancedb = pytest.importorskip("lancedb")
    run, _ = pool
    decide_run(run, "world-routes", write_kept=False, gates=False)
    info = build_index(run, tmp_path / "idx", backend="lancedb", where="decision != 'drop'")
    db = lancedb.connect(str(tmp_path / "idx" / "lancedb"))
    table = db.open_table("samples")
    got = table.to_arrow()
    dec = pq.read_table(run / "decisions.parquet", columns=["id", "decision"]).to_pylist()
    meta = {}
    for f in sorted((run / "metadata").glob("*.parquet")):
        meta.update({r["id"]: r["caption"] for r in pq.read_table(f).to_pylist()})
    want = [d["id"] for d in dec if d["decision"] != "drop"]
    assert got.num_rows == info["count"] == len(want)
    assert sorted(got.column("id").to_pylist()) == sorted(want)
    assert all(
        meta[i] == c
        for i, c in zip(
            got.column("id").to_pylist(), got.column("caption").to_pylist(), strict=True
        )
    )
    vec = np.asarray(got.column("vector")[3].as_py(), np.float32)
    res = table.search(vec).limit(1).to_list()
    assert res[0]["id"] == got.column("id")[3].as_py()
    assert db.open_table("captions").count_rows() == got.num_rows


def test_cli_search_json_and_html(objects: tuple[Path, dict], tmp_path: Path) -> None:
    run, truth = objects
    page = tmp_path / "r.html"
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "clipaudit",
            "search",
            str(run),
            "a red square",
            "--k",
            "3",
            "--json",
            "--html",
            str(page),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    rows = [json.loads(x) for x in out.stdout.strip().splitlines()]
    assert [r["rank"] for r in rows] == [1, 2, 3]
    assert truth[rows[0]["id"]]["shape"] == "square"
    assert "warning" not in out.stderr  # the world model on world data: it fits
    html = page.read_text()
    assert html.count("data:image/jpeg;base64,") == 3 and "<script" not in html
    assert "Content-Security-Policy" in html


def test_hostile_captions_are_escaped_in_the_page(
    pool: tuple[Path, list[dict]], tmp_path: Path
) -> None:
    from clipaudit.search.html import results_html
    from clipaudit.search.query import Hit

    run, _ = pool
    s = open_searchable(run)
    sid = s.rows.column("id")[0].as_py()
    evil = Hit(
        1,
        sid,
        0.5,
        {"caption": "<script>alert(1)</script>", "url": "javascript:x", "reasons": ["<b>"]},
    )
    html = results_html(s, [evil], "<img src=x onerror=alert(1)>", [("q", "<i>")], False)
    assert "<script>alert" not in html and "&lt;script&gt;" in html
    assert "<img src=x" not in html and "<b>" not in html and "<i>" not in html


def test_bad_input_gets_one_line_and_exit_2(objects: tuple[Path, dict], tmp_path: Path) -> None:
    run, _ = objects
    bad_image = tmp_path / "bad.jpg"
    bad_image.write_bytes(b"\xff\xd8 not a jpeg")
    cases = {
        ("search", str(run), "   "): "empty",
        ("search", str(run), "--image", str(bad_image)): "cannot be decoded",
        ("search", str(run), "--like", "no-such-id"): "no-such-id",
        ("search", str(run), "a circle", "--where", "decision = "): "decision",
        ("search", str(run), "a circle", "--where", "colour = 'red'"): "colour",
        ("search", str(run), "a circle", "--model", "ViT-B-32:openai"): "ViT-B-32:openai",
        ("search", str(run)): "exactly one query",
        ("search", str(tmp_path), "x"): "neither a run folder",
    }
    results = cli_batch(list(cases))
    for (args, needle), (code, _, stderr) in zip(cases.items(), results, strict=True):
        assert code == 2, (args, stderr)
        lines = [x for x in stderr.strip().splitlines() if x.strip()]
        assert len(lines) == 1 and needle in lines[0], (args, stderr)
        assert "Traceback" not in stderr


def test_a_run_without_embeddings_names_the_stage(tmp_path: Path) -> None:
    world_run(tmp_path, split="eval-objects", n=20, stages=["quality"], gates=False)
    commands = [("search", str(tmp_path / "run"), "x"), ("index", str(tmp_path / "run"))]
    for code, _, stderr in cli_batch(commands):
        assert code == 2 and "alignment" in stderr, stderr
    with pytest.raises(ClipauditError, match="alignment"):
        decide_run(tmp_path / "run", "world-routes", write_kept=False, gates=False)


def test_query_model_must_be_the_runs(objects: tuple[Path, dict], tmp_path: Path) -> None:
    run, _ = objects
    s = open_searchable(run)
    check_model(s, "bundled:world-clip")
    with pytest.raises(ClipauditError, match="bundled:world-clip"):
        check_model(s, "ViT-B-32:openai")
    # An image query is embedded with the run's model, and finds its own image first.
    from PIL import Image

    from clipaudit.data import open_dataset

    ds = open_dataset(str(run.parent / "w" / "data"))
    sample = next(iter(ds.read_shard(ds.shards()[0])))
    path = tmp_path / "q.png"
    path.write_bytes(sample.image or b"")
    Image.open(path).verify()
    hits = search(s, embed_image(s, path), k=1)
    assert hits[0].id == sample.id


def test_a_route_can_be_a_filter_over_signals(
    pool: tuple[Path, list[dict]], tmp_path: Path
) -> None:
    run, _ = pool
    pack = tmp_path / "p.yaml"
    pack.write_text(
        "name: p\nextends: default\nroutes:\n"
        "  wordy:\n    where: caption_chars > 40\n    action: flag\n"
        "  small_people:\n    phrases: [a photo of a doctor]\n"
        "    counter_phrases: [a photo of a circle]\n    where: width < 10000\n"
        "    action: keep\n"
    )
    decide_run(run, str(pack), write_kept=False, gates=False)
    dec = pq.read_table(run / "decisions.parquet").to_pylist()
    ok = [d for d in dec if d["error"] is None]
    assert {d["id"] for d in ok if "route:wordy" in d["reasons"]} == {
        d["id"] for d in ok if d["caption_chars"] > 40
    }
    assert all(d["route"] == "wordy" for d in ok if d["caption_chars"] > 40)
    assert all(d["route_score_wordy"] is None for d in dec)  # no phrases, no score
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: b\nextends: default\nroutes:\n  x:\n    where: colour = 'red'\n")
    with pytest.raises(ClipauditError, match=r"route 'x'.*colour"):
        decide_run(run, str(bad), write_kept=False, gates=False)
    empty = tmp_path / "empty.yaml"
    empty.write_text("name: e\nextends: default\nroutes:\n  x:\n    action: flag\n")
    with pytest.raises(ClipauditError, match="phrases, a where"):
        decide_run(run, str(empty), write_kept=False, gates=False)


def test_quantised_index_agrees_with_exact_search(
    objects: tuple[Path, dict], tmp_path: Path
) -> None:
    run, _ = objects
    info = build_index(run, tmp_path / "pq", kind="pq")
    assert info["kind"] == "pq" and info["params"]["k_factor"] >= 10
    pq_s = open_searchable(tmp_path / "pq")
    exact = open_searchable(run, use_index=False)
    assert exact.index is None
    overlaps = []
    for q in ("a red circle", "a small blue star", "a large black hexagon"):
        v = embed_text(pq_s, q)
        a = [h.id for h in search(pq_s, v, k=10)]
        b = [h.id for h in search(exact, v, k=10)]
        overlaps.append(len(set(a) & set(b)) / 10)
        # Filtered: every result passes the filter, as many as asked.
        got = search(pq_s, v, k=10, where="caption_chars > 25")
        want = search(exact, v, k=10, where="caption_chars > 25")
        assert len(got) == 10 and all(len(h.columns["caption"]) > 25 for h in got)
        overlaps.append(len({h.id for h in got} & {h.id for h in want}) / 10)
    assert np.mean(overlaps) >= 0.9, overlaps


def test_a_large_run_without_an_index_asks_for_one(
    objects: tuple[Path, dict], monkeypatch: pytest.MonkeyPatch
) -> None:
    from clipaudit.search import query

    run, _ = objects
    monkeypatch.setattr(query, "EXACT_RUN_MAX", 100)
    with pytest.raises(ClipauditError, match=r"384 samples and no index.*clipaudit index"):
        open_searchable(run, use_index=False)


def test_an_index_follows_a_later_decide(pool: tuple[Path, list[dict]], tmp_path: Path) -> None:
    """Deciding again changes decisions, reasons and routes, not embeddings: a search over
    the run's index reads the current decision table; an index built with --where, which may
    now hold the wrong samples, is refused with a sentence."""

    run, _ = pool
    decide_run(run, "default", write_kept=False, gates=False)
    build_index(run)
    filtered = tmp_path / "kept-index"
    build_index(run, filtered, where="decision = 'keep'")
    assert "route" not in open_searchable(run).rows.column_names
    decide_run(run, "world-routes", write_kept=False, gates=False)
    s = open_searchable(run)
    assert s.info["kind"] != "exact"  # the index, not the embeddings read whole
    hits = search(s, embed_text(s, "a doctor"), k=5, where="route = 'people'")
    assert len(hits) == 5 and all(h.columns["route"] == "people" for h in hits)
    now = {d["id"]: d for d in pq.read_table(run / "decisions.parquet").to_pylist()}
    assert all(h.columns["reasons"] == now[h.id]["reasons"] for h in hits)
    with pytest.raises(ClipauditError, match="built with --where"):
        open_searchable(filtered)
    decide_run(run, "default", write_kept=False, gates=False)  # as the other tests expect
    assert "route" not in open_searchable(run).rows.column_names


def test_a_search_with_a_model_that_does_not_fit_the_data_says_so(tmp_path: Path) -> None:
    """The world-trained model on data the world did not make ranks at chance (decide
    already leaves its cosines out); a search over such a run warns, on stderr and on the
    page, instead of listing arbitrary samples in confident order."""
    from clipaudit.curate.pipeline import CurateConfig, curate
    from clipaudit.data import write_dataset
    from clipaudit.data.example import example_samples

    write_dataset(iter(example_samples(12)), str(tmp_path / "data"), "parquet")
    curate(
        CurateConfig(
            str(tmp_path / "data"),
            str(tmp_path / "run"),
            stages=["quality", "alignment"],
            model="bundled:world-clip",
        )
    )
    page = tmp_path / "r.html"
    ((code, stdout, stderr),) = cli_batch(
        [("search", str(tmp_path / "run"), "a red square", "--k", "2", "--html", str(page))]
    )
    assert code == 0, stderr
    assert len(stdout.strip().splitlines()) == 2
    assert "warning: the run's model bundled:world-clip was trained only on" in stderr
    assert "rank these samples near chance" in page.read_text()


def test_an_index_of_a_partial_run_says_so(tmp_path: Path) -> None:
    """A run decided with --partial: index.json records the shard counts and `clipaudit
    index` says the index holds the scored shards only (it said nothing), as the report's
    CSV does."""
    from clipaudit.curate.pipeline import CurateConfig, curate
    from clipaudit.data import write_dataset
    from clipaudit.data.example import example_samples
    from clipaudit.reports.render import write_report

    write_dataset(iter(example_samples(12)), str(tmp_path / "data"), "parquet", shard_size=4)
    run = tmp_path / "run"
    curate(CurateConfig(str(tmp_path / "data"), str(run), stages=["quality", "alignment"]))
    (run / "markers" / "shard-00001.done").unlink()  # curate stopped before its marker
    decide_run(run, "default", partial=True, gates=False)
    info = build_index(run)
    assert info["partial"] == {"input_shards": 3, "scored_shards": 2, "unscored_shards": [1]}
    assert info["selected"] == 8
    ((code, stdout, stderr),) = cli_batch([("index", str(run))])
    assert code == 0, stderr
    assert (
        "PARTIAL: the run was decided with --partial; the index holds the samples of 2 of the "
        "input's 3 shards, none of the other shard (not scored)" in " ".join(stdout.split())
    )
    rows = write_report([run]).csv.read_text(encoding="utf-8").splitlines()
    assert "0,curation,partial.scored_shards,2" in rows
    assert "0,curation,partial.input_shards,3" in rows
