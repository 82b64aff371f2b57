"""Retrieval data: several captions per image (repeated file_name rows, --captions-field),
and what happens to unreadable images. Numbers against clip-benchmark, small sets included,
are in test_eval_agreement.py."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from typer.testing import CliRunner

from clipaudit.errors import ClipauditError
from clipaudit.evaluate import BootstrapSpec, load_retrieval, zeroshot_retrieval
from clipaudit.evaluate.cli import eval_app
from clipaudit.models import load_clip


def _png(colour: tuple[int, int, int]) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), colour).save(buf, format="PNG")
    return buf.getvalue()


def _folder(root: Path, rows: list[dict[str, Any]], files: dict[str, bytes]) -> str:
    root.mkdir(parents=True)
    for name, data in files.items():
        (root / name).write_bytes(data)
    (root / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(root)


COLOURS = {"a.png": (200, 0, 0), "b.png": (0, 200, 0), "c.png": (0, 0, 200)}
FILES = {name: _png(c) for name, c in COLOURS.items()}


@pytest.fixture(scope="module")
def clip() -> Any:
    return load_clip("random:clipaudit-tiny", device="cpu")


def _one_sentence(err: BaseException) -> str:
    msg = str(err)
    assert "\n" not in msg and msg.endswith(".")
    return msg


def test_missing_captions_field_is_named_with_the_fields_there_are(tmp_path: Path) -> None:
    rows = [{"file_name": n, "caption": f"cap {n}", "extra": ["x"]} for n in FILES]
    ds = _folder(tmp_path / "d", rows, FILES)
    with pytest.raises(ClipauditError) as err:
        load_retrieval(ds, captions_field="no_such_field")
    msg = _one_sentence(err.value)
    assert "'no_such_field'" in msg and "extra" in msg
    assert "fields are extra:" in msg  # the caption column is read as such: not offered


def test_plain_string_captions_field_is_refused(tmp_path: Path) -> None:
    rows = [{"file_name": n, "caption": f"cap {n}", "extra": "notalist"} for n in FILES]
    ds = _folder(tmp_path / "d", rows, FILES)
    with pytest.raises(ClipauditError) as err:
        load_retrieval(ds, captions_field="extra")
    msg = _one_sentence(err.value)
    assert "'extra'" in msg and "'a.png'" in msg and "'notalist'" in msg
    assert "list" in msg and "--caption-column" in msg


def test_captions_field_takes_lists_and_json_lists(tmp_path: Path) -> None:
    rows = [
        {"file_name": "a.png", "caption": "red", "extra": ["crimson", "scarlet"]},
        {"file_name": "b.png", "caption": "green", "extra": json.dumps(["lime"])},
        {"file_name": "c.png", "caption": "blue"},  # no field here: no extra captions
    ]
    data = load_retrieval(_folder(tmp_path / "d", rows, FILES), captions_field="extra")
    assert data.captions == ["red", "crimson", "scarlet", "green", "lime", "blue"]
    assert data.caption_ids == ["a.png", "a.png#1", "a.png#2", "b.png", "b.png#1", "c.png"]
    assert data.caption_image.tolist() == [0, 0, 0, 1, 1, 2]


def test_repeated_file_name_rows_are_one_image_with_several_captions(
    tmp_path: Path, clip: Any
) -> None:
    """The imagefolder way of writing several captions: one metadata row per caption. It
    used to fail with 'Duplicate sample ids'; it now equals the same set with an id column."""
    caps = [("a.png", "red"), ("a.png", "a red square"), ("b.png", "green"),
            ("b.png", "a green square"), ("b.png", "lime"), ("c.png", "blue")]  # fmt: skip
    rows = [{"file_name": f, "caption": c} for f, c in caps]
    data = load_retrieval(_folder(tmp_path / "plain", rows, FILES))
    assert data.images.ids == ["a.png", "b.png", "c.png"]
    assert data.caption_ids == ["a.png", "a.png#1", "b.png", "b.png#1", "b.png#2", "c.png"]
    assert data.caption_image.tolist() == [0, 0, 1, 1, 1, 2]
    assert [im is not None for im, _ in data.images.read()] == [True, True, True]

    with_ids = [{"id": f"r{i}", **r} for i, r in enumerate(rows)]
    keyed = load_retrieval(_folder(tmp_path / "keyed", with_ids, FILES))
    assert keyed.caption_image.tolist() == data.caption_image.tolist()
    boot = BootstrapSpec(n=50)
    ours = zeroshot_retrieval(clip, data, boot=boot)
    theirs = zeroshot_retrieval(clip, keyed, boot=boot)
    assert ours["metrics"] == theirs["metrics"]
    assert ours["dataset"]["n_images"] == 3 and ours["dataset"]["n_captions"] == 6


def test_repeated_id_of_another_image_is_refused(tmp_path: Path) -> None:
    rows = [
        {"id": "x", "file_name": "a.png", "caption": "red"},
        {"id": "x", "file_name": "b.png", "caption": "green"},
    ]
    with pytest.raises(ClipauditError) as err:
        load_retrieval(_folder(tmp_path / "d", rows, FILES))
    msg = _one_sentence(err.value)
    assert "'x'" in msg and "two different images" in msg


def test_unreadable_images_are_counted_in_notes_and_on_the_console(
    tmp_path: Path, clip: Any
) -> None:
    files = {**FILES, "d.png": _png((90, 90, 90)), "bad.png": b"\x89PNG\r\n\x1a\n not a png"}
    rows = [{"file_name": n, "caption": f"cap {n}"} for n in files]
    rows += [
        {"file_name": "bad.png", "caption": "another for bad"},
        {"file_name": "gone.png", "caption": "its file is missing"},
    ]
    ds = _folder(tmp_path / "d", rows, files)
    res = zeroshot_retrieval(clip, load_retrieval(ds), boot=BootstrapSpec(n=0))
    assert res["dataset"]["n_images"] == 4 and res["dataset"]["n_captions"] == 4
    assert res["dataset"]["skipped"] == {"decode_error": 1, "missing_image": 1}
    note = res["notes"][0]
    assert note == (
        "2 images could not be read (decode_error 1, missing_image 1) and were left out with "
        "their 3 captions; the metrics cover the other 4."
    )
    out = CliRunner().invoke(
        eval_app,
        [
            "retrieval",
            ds,
            "--out",
            str(tmp_path / "o"),
            "-m",
            "random:clipaudit-tiny",
            "--bootstrap",
            "0",
        ],
    )
    assert out.exit_code == 0, out.output
    assert f"note: {note}" in out.stderr
    written = json.loads((tmp_path / "o" / "00-random-clipaudit-tiny" / "results.json").read_text())
    assert note in written["notes"]


def test_one_image_with_one_caption_is_refused(tmp_path: Path, clip: Any) -> None:
    """Every recall@k of a one-image, one-caption set is 1 by construction: nothing to report."""
    ds = _folder(tmp_path / "d", [{"file_name": "a.png", "caption": "red"}], FILES)
    with pytest.raises(ClipauditError) as err:
        zeroshot_retrieval(clip, load_retrieval(ds), boot=BootstrapSpec(n=0))
    assert "1 readable image and 1 caption" in _one_sentence(err.value)


def test_one_image_with_several_captions_reports_image_to_text_only(
    tmp_path: Path, clip: Any
) -> None:
    rows = [{"file_name": "a.png", "caption": c} for c in ("red", "crimson", "scarlet")]
    res = zeroshot_retrieval(
        clip, load_retrieval(_folder(tmp_path / "d", rows, FILES)), boot=BootstrapSpec(n=0)
    )
    assert list(res["metrics"]) == ["image_to_text_recall@1"]
    assert res["metrics"]["image_to_text_recall@1"]["value"] == 1.0  # its captions are all
    assert res["notes"][0] == (
        "text→image recall@1, @5 and @10 are not reported: there is 1 image to rank, and "
        "recall@k with k ≥ 1 is 1 by construction."
    )
