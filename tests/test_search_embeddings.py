"""Search over a run with samples that have no embedding, a run moved or copied with its
index, and the paths search writes to or reads from (search/)."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from clipaudit.curate.decide import decide_run
from clipaudit.errors import ClipauditError
from clipaudit.search.index import build_index
from clipaudit.search.query import like_query, open_searchable, search
from tests.conftest import cli_batch

N = 24  # 20 drawn shapes, a copy of 000003, and three samples short of an embedding


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A curated run whose ``broken`` image does not decode (a caption embedding only),
    whose ``nocap`` has no caption (an image embedding only), whose ``void`` has neither,
    and whose ``copycat`` is an exact copy of ``000003`` (decide drops it)."""
    from clipaudit.curate.pipeline import CurateConfig, curate
    from clipaudit.data import write_dataset
    from clipaudit.data.example import example_samples
    from clipaudit.data.sample import Sample

    root = tmp_path_factory.mktemp("noemb")
    base = list(example_samples(20))
    other = next(iter(example_samples(1, seed=5))).image
    samples = [
        *base,
        dataclasses.replace(base[3], id="copycat"),
        Sample("broken", b"not an image", "a red circle", image_ext="jpg"),
        Sample("nocap", other, "", image_ext="jpg"),
        Sample("void", b"nothing", "", image_ext="jpg"),
    ]
    write_dataset(iter(samples), str(root / "data"), "parquet")
    curate(
        CurateConfig(
            str(root / "data"),
            str(root / "run"),
            stages=["quality", "hashes", "alignment"],
            model="bundled:world-clip",
        )
    )
    return root / "run"


def _copy(run: Path, to: Path) -> Path:
    shutil.copytree(run, to)
    shutil.rmtree(to / "index", ignore_errors=True)
    return to


def _metadata(run: Path) -> list[dict]:
    return [
        r
        for f in sorted((run / "metadata").glob("*.parquet"))
        for r in pq.read_table(f).to_pylist()
    ]


def test_samples_without_an_embedding_are_never_results(run: Path, tmp_path: Path) -> None:
    """An all-zero embedding row (an undecodable image, a missing caption) has cosine 0 with
    everything: it used to answer --like with cosines 0 and rank above negative cosines."""
    exact = open_searchable(run, use_index=False)
    info = build_index(_copy(run, tmp_path / "r"))
    assert info["count"] == N - 2 and info["caption_count"] == N - 2  # broken, void / nocap, void
    assert (info["without_image"], info["without_caption"], info["selected"]) == (2, 2, N)
    rows = pq.read_table(tmp_path / "r" / "index" / "rows.parquet").column("id").to_pylist()
    assert "void" not in rows and {"broken", "nocap"} <= set(rows) and len(rows) == N - 1
    indexed = open_searchable(tmp_path / "r")
    both = (exact, indexed)
    for s in both:
        at, query = like_query(s, "000005")
        images = search(s, query, k=N, exclude=at)
        captions = search(s, query, k=N, captions=True)
        assert len(images) == N - 3 and not {"broken", "void", "000005"} & {h.id for h in images}
        assert len(captions) == N - 2 and not {"nocap", "void"} & {h.id for h in captions}
        assert all(h.score != 0.0 for h in images + captions)
        assert (s.left_out(), s.left_out(captions=True)) == (2, 2)
        # The caption-only sample is still found by its caption.
        assert "broken" in {h.id for h in captions}
        with pytest.raises(ClipauditError, match=r"'broken' has no image embedding.*decode"):
            like_query(s, "broken")
    with pytest.raises(ClipauditError, match="'void' has no embedding"):
        like_query(indexed, "void")
    # Same cosines from the index as from the embeddings read whole (ties in either order).
    for captions in (False, True):
        a, b = (search(s, like_query(s, "000005")[1], k=N, captions=captions) for s in both)
        assert sorted((round(h.score, 4), h.id) for h in a) == sorted(
            (round(h.score, 4), h.id) for h in b
        )

    ((code, out, err), (bad, _, bad_err), (_, idx_out, _)) = cli_batch(
        [
            ("search", str(run), "--like", "nocap", "--captions", "--k", "3", "--json"),
            ("search", str(run), "--like", "broken"),
            ("index", str(tmp_path / "r")),
        ]
    )
    assert code == 0, err
    ids = [json.loads(x)["id"] for x in out.splitlines()]
    assert len(ids) == 3 and not {"nocap", "void"} & set(ids)
    assert "note: 2 samples without a caption embedding (no caption) left out" in err
    assert bad == 2 and "Traceback" not in bad_err
    assert bad_err.strip().splitlines() == [
        "error: sample 'broken' has no image embedding: its image did not decode "
        "(decode_error), so --like has nothing to search with; search with its caption as "
        "text instead, or give another sample's id."
    ]
    assert f"{N - 2} image and {N - 2} caption vectors" in idx_out
    assert "left out: 2 without an image embedding" in idx_out
    assert f"2 without a caption embedding (no caption) (of {N} samples)" in idx_out


def test_an_index_moved_with_its_run_finds_that_run(run: Path, tmp_path: Path) -> None:
    """index.json kept the run's absolute path: after ``mv runA runB`` a search crashed
    reading runA/decisions.parquet."""
    a = _copy(run, tmp_path / "runA")
    build_index(a)
    before = search(open_searchable(a), like_query(open_searchable(a), "000003")[1], k=3)
    assert json.loads((a / "index" / "index.json").read_text())["run"] == ".."
    b = a.rename(tmp_path / "runB")
    for source in (b, b / "index"):
        s = open_searchable(source)
        assert s.run.path.resolve() == b.resolve() and s.index is not None
        after = search(s, like_query(s, "000003")[1], k=3)
        assert [(h.id, round(h.score, 5)) for h in after] == [
            (h.id, round(h.score, 5)) for h in before
        ]
    ((code, out, err),) = cli_batch([("search", str(b), "--like", "000003", "--k", "1")])
    assert code == 0 and "Traceback" not in err and out.split()[2] == "copycat"
    # An index moved away from its run names where it looked, in one line.
    shutil.copytree(b / "index", tmp_path / "elsewhere" / "idx")
    ((code, _, err),) = cli_batch([("search", str(tmp_path / "elsewhere" / "idx"), "a star")])
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "was built from the run at" in err and "which is not there now" in err
    # An index written by the previous format (absolute run path, zero rows kept): refused.
    info = json.loads((b / "index" / "index.json").read_text())
    (b / "index" / "index.json").write_text(json.dumps({**info, "format": 1}))
    with pytest.raises(ClipauditError, match=r"earlier clipaudit.*clipaudit index"):
        open_searchable(b)


def test_a_copied_run_searches_its_own_decisions(run: Path, tmp_path: Path) -> None:
    """``cp -r run runC; clipaudit decide runC --rules keep-all``: a search over runC read
    run's decision table (copycat shown dropped) through the absolute path in its index."""
    orig = _copy(run, tmp_path / "run")
    build_index(orig)
    copy = tmp_path / "runC"
    shutil.copytree(orig, copy)
    decide_run(copy, "keep-all", write_kept=False, gates=False)
    caption = next(r["caption"] for r in _metadata(run) if r["id"] == "copycat")
    assert caption  # the metadata's caption, which a re-read of decisions dropped
    got = {}
    for name, path in (("orig", orig), ("copy", copy), ("copy index", copy / "index")):
        s = open_searchable(path)
        hit = search(s, like_query(s, "000003")[1], k=1, exclude=like_query(s, "000003")[0])[0]
        assert hit.id == "copycat" and hit.columns["caption"] == caption
        got[name] = (hit.columns["decision"], hit.columns["reasons"])
    # keep-all keeps the copy (still coding why it would go).
    assert got == {
        "orig": ("drop", ["exact_duplicate"]),
        "copy": ("keep", ["exact_duplicate"]),
        "copy index": ("keep", ["exact_duplicate"]),
    }


def test_html_and_image_paths_are_one_line_each(run: Path, tmp_path: Path) -> None:
    """--html into a missing folder is created; --html a folder, or under a file, and
    --image a folder are one line each (they were tracebacks, or "does not exist")."""
    page = tmp_path / "new" / "deeper" / "r.html"
    a_file = tmp_path / "f.txt"
    a_file.write_text("x")
    cases = [
        ("search", str(run), "a red circle", "--k", "2", "--html", str(page)),
        ("search", str(run), "a red circle", "--html", str(tmp_path)),
        ("search", str(run), "a red circle", "--html", str(a_file / "r.html")),
        ("search", str(run), "--image", str(tmp_path)),
    ]
    (ok, folder, under, image) = cli_batch(cases)
    assert ok[0] == 0, ok[2]
    assert page.read_text().count("data:image/jpeg;base64,") == 2
    want = [
        f"error: --html {str(tmp_path)!r} is a folder; give a file name for the page, like "
        f"{str(tmp_path / 'search.html')!r}.",
        f"error: --html {str(a_file / 'r.html')!r} lies under {str(a_file)!r}, which is a "
        "file, not a folder; give a path in a folder.",
        f"error: the query image {str(tmp_path)!r} is a folder; give one image file inside it.",
    ]
    for (code, _, err), line in zip((folder, under, image), want, strict=True):
        assert code == 2 and err.strip().splitlines() == [line], err
