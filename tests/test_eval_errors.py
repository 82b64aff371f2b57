"""User mistakes in eval inputs are one ClipauditError sentence that names the culprit."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from clipaudit.data import Sample, write_dataset
from clipaudit.errors import ClipauditError
from clipaudit.evaluate import build_prompts, load_classification, load_templates
from clipaudit.evaluate.cli import eval_app
from clipaudit.evaluate.prompts import load_classnames


def _png(colour: tuple[int, int, int]) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), colour).save(buf, format="PNG")
    return buf.getvalue()


def _one_sentence(err: BaseException) -> str:
    msg = str(err)
    assert "\n" not in msg and msg.endswith(".")
    return msg


def test_empty_class_folder_is_named(tmp_path: Path) -> None:
    (tmp_path / "cat").mkdir()
    (tmp_path / "cat" / "a.png").write_bytes(_png((1, 2, 3)))
    (tmp_path / "dog").mkdir()
    (tmp_path / "dog" / "notes.txt").write_text("no pictures here")
    with pytest.raises(ClipauditError) as err:
        load_classification(str(tmp_path))
    msg = _one_sentence(err.value)
    assert "'dog'" in msg and "no images" in msg


def test_class_in_list_without_images_is_named(tmp_path: Path) -> None:
    samples = [Sample(f"s{i}", _png((i, 0, 0)), meta={"label": "cat"}) for i in range(3)]
    write_dataset(samples, tmp_path / "ds", "parquet")
    (tmp_path / "classes.txt").write_text("cat\nzebra\n")
    with pytest.raises(ClipauditError) as err:
        load_classification(
            str(tmp_path / "ds"), classnames=load_classnames(str(tmp_path / "classes.txt"))
        )
    assert "'zebra'" in _one_sentence(err.value)


def test_label_outside_class_list_is_named(tmp_path: Path) -> None:
    samples = [
        Sample("a", _png((1, 0, 0)), meta={"label": "cat"}),
        Sample("b", _png((2, 0, 0)), meta={"label": "dgo"}),
    ]
    write_dataset(samples, tmp_path / "ds", "parquet")
    (tmp_path / "classes.json").write_text(json.dumps({"pets": ["cat", "dog"]}))
    names = load_classnames(str(tmp_path / "classes.json") + "#pets")
    assert names == ["cat", "dog"]
    with pytest.raises(ClipauditError) as err:
        load_classification(str(tmp_path / "ds"), label_column="label", classnames=names)
    msg = _one_sentence(err.value)
    assert "'dgo'" in msg and "'b'" in msg and "class list" in msg


def test_integer_label_out_of_range_is_named(tmp_path: Path) -> None:
    samples = [
        Sample("a", _png((1, 0, 0)), meta={"y": 0}),
        Sample("b", _png((2, 0, 0)), meta={"y": 7}),
    ]
    write_dataset(samples, tmp_path / "ds", "parquet")
    with pytest.raises(ClipauditError) as err:
        load_classification(str(tmp_path / "ds"), label_column="y", classnames=["cat", "dog"])
    assert "7" in _one_sentence(err.value)


def test_template_without_placeholder_is_named(tmp_path: Path) -> None:
    path = tmp_path / "t.json"
    path.write_text(json.dumps(["a photo of a {c}.", "a photo of a thing."]))
    with pytest.raises(ClipauditError) as err:
        build_prompts(["cat", "dog"], load_templates(str(path)), str(path))
    msg = _one_sentence(err.value)
    assert "'a photo of a thing.'" in msg and "{c}" in msg


def test_per_class_prompts_missing_a_class_is_named() -> None:
    with pytest.raises(ClipauditError) as err:
        build_prompts(["red", "teal"], load_templates("world-colors"), "world-colors")
    assert "'teal'" in _one_sentence(err.value)


def test_unknown_template_set_lists_the_builtins() -> None:
    with pytest.raises(ClipauditError) as err:
        load_templates("opneai")
    assert (
        "'opneai'" in str(err.value) and "openai" in str(err.value) and "simple" in str(err.value)
    )


def test_cli_surfaces_the_error(tmp_path: Path) -> None:
    (tmp_path / "data" / "cat").mkdir(parents=True)
    (tmp_path / "data" / "cat" / "a.png").write_bytes(_png((1, 2, 3)))
    (tmp_path / "data" / "dog").mkdir()
    res = CliRunner().invoke(
        eval_app, ["zeroshot", str(tmp_path / "data"), "--out", str(tmp_path / "out")]
    )
    assert isinstance(res.exception, ClipauditError)
    assert "'dog'" in str(res.exception)
    assert not (tmp_path / "out").exists()  # nothing written before the data is valid
