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
from clipaudit.evaluate import BootstrapSpec, build_prompts, load_classification, load_templates
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


def test_a_hidden_folder_is_not_a_class(tmp_path: Path) -> None:
    """Jupyter's .ipynb_checkpoints beside the class folders was a KeyError traceback: the
    class list skipped it, the image reader did not."""
    for name, colour in (("cat", (1, 2, 3)), ("dog", (9, 8, 7)), (".ipynb_checkpoints", (5, 5, 5))):
        (tmp_path / name).mkdir()
        (tmp_path / name / "a.png").write_bytes(_png(colour))
    data = load_classification(str(tmp_path))
    assert data.classnames == ["cat", "dog"]
    assert sorted(data.images.ids) == ["cat/a.png", "dog/a.png"]
    assert data.labels.tolist() == [0, 1]


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


@pytest.mark.parametrize("device", ["potato", "cuda", "cuda:7"])
def test_bad_device_is_one_sentence_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, device: str
) -> None:
    """An unknown device used to be torch's RuntimeError, and cuda on a CPU-only machine
    said the weights could not be downloaded; both are refused before any data is read."""
    import torch

    from clipaudit.errors import ModelError
    from clipaudit.models.loader import pick_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: device == "cuda:7")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1 if device == "cuda:7" else 0)
    with pytest.raises(ModelError) as err:
        pick_device(device)
    msg = _one_sentence(err.value)
    assert f"{device!r}" in msg and "download" not in msg
    want = {"potato": "Unknown device", "cuda": "--device cpu", "cuda:7": "1 CUDA GPU (cuda:0)"}
    assert want[device] in msg
    (tmp_path / "data" / "cat").mkdir(parents=True)
    (tmp_path / "data" / "cat" / "a.png").write_bytes(_png((1, 2, 3)))
    res = CliRunner().invoke(
        eval_app,
        ["zeroshot", str(tmp_path / "data"), "--out", str(tmp_path / "o"), "--device", device],
    )
    assert isinstance(res.exception, ModelError) and str(res.exception) == msg
    assert not (tmp_path / "o").exists()


def _captioned(root: Path) -> str:
    """An imagefolder of captions only: caption, file_name and id, no other field."""
    root.mkdir()
    rows = []
    for i in range(3):
        (root / f"{i}.png").write_bytes(_png((i, 9, 9)))
        rows.append({"file_name": f"{i}.png", "caption": f"thing {i}", "id": f"s{i}"})
    (root / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(root)


def test_caption_dataset_offers_no_label_column_it_then_refuses(tmp_path: Path) -> None:
    """It used to suggest --label-column with caption, file_name or id, then refuse each
    with 'its fields are none'."""
    ds = _captioned(tmp_path / "d")
    with pytest.raises(ClipauditError) as err:
        load_classification(ds)
    guess = _one_sentence(err.value)
    assert "caption, file_name" not in guess
    assert "no field besides image, caption and id" in guess and "class folders" in guess
    with pytest.raises(ClipauditError) as err:
        load_classification(ds, label_column="caption")
    msg = _one_sentence(err.value)
    assert "'caption'" in msg and "not as a label" in msg and "class folders" in msg
    with pytest.raises(ClipauditError) as err:
        load_classification(ds, label_column="kind")
    msg = _one_sentence(err.value)
    assert "'kind'" in msg and "'s0'" in msg and "none" not in msg


def test_label_field_missing_names_the_fields_there_are(tmp_path: Path) -> None:
    samples = [Sample(f"s{i}", _png((i, 0, 0)), meta={"shape": "cat", "size": 2}) for i in range(2)]
    write_dataset(samples, tmp_path / "ds", "parquet")
    with pytest.raises(ClipauditError) as err:
        load_classification(str(tmp_path / "ds"))
    assert "--label-column with one of shape, size." in _one_sentence(err.value)


def test_unreadable_images_and_a_class_left_without_any_are_noted(tmp_path: Path) -> None:
    """Unreadable images used to vanish with empty notes, and a class whose only images
    were unreadable was silently averaged out of mean per-class recall."""
    from clipaudit.evaluate import zeroshot_classification
    from clipaudit.models import load_clip

    root = tmp_path / "data"
    bad = b"\x89PNG\r\n\x1a\n broken"
    layout = {"cat": [(200, 0, 0)] * 3, "dog": [(0, 200, 0), (0, 190, 0), None], "owl": [None]}
    for name, colours in layout.items():
        (root / name).mkdir(parents=True)
        for i, c in enumerate(colours):
            (root / name / f"{i}.png").write_bytes(_png(c) if c else bad)
    data = load_classification(str(root))
    prompts = build_prompts(data.classnames, load_templates("simple"), "simple")
    clip = load_clip("random:clipaudit-tiny", device="cpu")
    res = zeroshot_classification(clip, data, prompts, boot=BootstrapSpec(n=0))
    assert res["dataset"]["n"] == 5 and res["dataset"]["skipped"] == {"decode_error": 2}
    assert res["notes"][:2] == [
        "2 images could not be read (decode_error 2) and were left out; the metrics cover "
        "the other 5.",
        "1 class ('owl') had no readable image: its recall is null and mean_per_class_recall "
        "averages the other 2 classes; it stays a candidate for every prediction.",
    ]
    recall = res["per_class"]["recall"]
    assert recall["owl"] is None and res["per_class"]["support"]["owl"] == 0
    mean = (recall["cat"] + recall["dog"]) / 2
    assert res["metrics"]["mean_per_class_recall"]["value"] == pytest.approx(mean)
    out = CliRunner().invoke(
        eval_app,
        [
            "zeroshot",
            str(root),
            "--out",
            str(tmp_path / "o"),
            "--templates",
            "simple",
            "-m",
            "random:clipaudit-tiny",
            "--bootstrap",
            "0",
        ],
    )
    assert out.exit_code == 0, out.output
    assert all(f"note: {n}" in out.stderr for n in res["notes"][:2])


def test_an_out_that_is_a_file_is_called_a_file(tmp_path: Path) -> None:
    """`--out afile` said "The output folder 'afile' is not empty"."""
    from clipaudit.evaluate.cli import _fresh

    (tmp_path / "afile").write_text("x")
    with pytest.raises(ClipauditError, match="is a file; choose a new folder"):
        _fresh(tmp_path / "afile")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(ClipauditError, match="is not empty; choose a new one"):
        _fresh(tmp_path / "full")
    _fresh(tmp_path / "new")  # a folder that is not there yet is fine
