"""Training the visible-watermark detector elsewhere: pairs drawn by worker processes, the
packed photos and fonts a GPU machine receives, and weights trained there measured here."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from clipaudit.safety.visible import data as vd
from clipaudit.safety.visible import marks

pytest.importorskip("matplotlib", reason="the TRAIN fonts are matplotlib's bundled TTFs")

TINY = {
    "steps": 6,
    "batch_pairs": 8,
    "fresh_pairs": 4,
    "buffer": 64,
    "lr": 0.01,
    "warmup": 2,
    "n_world": 6,
    "n_world_heldout": 6,
    "eval_pairs": 12,
    "limit_pairs": 6,
    "widths": [8, 8, 12, 16, 16],
}


def test_a_steps_pairs_are_its_own_and_need_no_worker_count() -> None:
    from clipaudit.safety.visible.stream import step_pairs, worker_pairs

    bank = vd.Bank.build("train", 6)
    a = step_pairs(bank, 0, 3, 2, 0.5, True)
    b = step_pairs(bank, 0, 3, 2, 0.5, True)
    assert all(np.array_equal(x[k], y[k]) for x, y in zip(a, b, strict=True) for k in (0, 1))
    other = step_pairs(bank, 0, 4, 2, 0.5, True)
    assert not np.array_equal(a[0][1], other[0][1])  # another step, other pairs
    # Drawn by two forked workers, in order, the same pairs as drawn here.
    drawn = list(worker_pairs(bank, [2, 3, 4], 2, seed=0, n=2, photo_share=0.5,
                              visible_only=True))  # fmt: skip
    assert len(drawn) == 3 and all(len(d) == 2 for d in drawn)
    assert np.array_equal(drawn[1][0][1], a[0][1]) and np.array_equal(drawn[2][1][0], other[1][0])
    for clean, marked in drawn[0]:
        assert clean.shape == marked.shape == (vd.INPUT_SIZE, vd.INPUT_SIZE, 3)
        assert np.abs(clean.astype(int) - marked.astype(int)).max() > 8  # a visible mark


def test_weights_do_not_depend_on_how_many_workers_drew_the_pairs(tmp_path: Path) -> None:
    from clipaudit.safety.visible.train import TrainConfig, train

    one = train(TrainConfig(out=str(tmp_path / "w1"), workers=1, evaluate=False, **TINY), False)
    two = train(TrainConfig(out=str(tmp_path / "w2"), workers=2, evaluate=False, **TINY), False)
    assert one["training"]["weights_sha256"] == two["training"]["weights_sha256"]
    assert one["training"]["workers"] == 1 and two["training"]["workers"] == 2
    # Not measured: no thresholds or card claimed, the weights and their record written.
    assert "thresholds" not in one and not (tmp_path / "w1" / "CARD.md").exists()
    assert {p.name for p in (tmp_path / "w1").iterdir()} == {
        "model.safetensors", "config.json", "metrics.json"}  # fmt: skip


def test_weights_trained_elsewhere_are_measured_here(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from clipaudit.safety.visible.detector import load_from
    from clipaudit.safety.visible.train import main

    made = tmp_path / "made"
    main(["--out", str(made), "--evaluate", "false", "--widths", "8", "8", "12", "16", "16",
          *[f"--{k.replace('_', '-')}={v}" for k, v in TINY.items() if k != "widths"]])  # fmt: skip
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["out"] == str(made)
    trained = json.loads((made / "metrics.json").read_text())

    # --steps 0 takes the shape from the folder (no --widths given) and only measures.
    main(["--out", str(tmp_path / "measured"), "--steps", "0", "--init", str(made),
          "--n-world-heldout", "6", "--eval-pairs", "12", "--limit-pairs", "6"])  # fmt: skip
    m = json.loads((tmp_path / "measured" / "metrics.json").read_text())
    assert m["training"]["weights_sha256"] == trained["training"]["weights_sha256"]
    assert m["training"]["loss_first"] == trained["training"]["loss_first"]
    assert m["recipe"]["command"] == trained["recipe"]["command"]
    assert "--steps 0" in m["recipe"]["measure_command"]
    assert set(m["thresholds"]) == {"fpr_0.005", "fpr_0.01", "fpr_0.05"}
    card = (tmp_path / "measured" / "CARD.md").read_text()
    assert "Trained there; measured here" in card and "6 steps" in card
    det = load_from(tmp_path / "measured")
    assert det.sha256 == trained["training"]["weights_sha256"]


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--steps", "0"], "--steps 0 measures trained weights"),
        (["--workers", "-1"], "give counts of 0 or more"),
        (["--device", "cuda"], "no CUDA device is visible here"),
    ],
)
def test_training_arguments_that_cannot_work_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], says: str
) -> None:
    import torch

    from clipaudit.safety.visible.train import main

    if "cuda" in argv and torch.cuda.is_available():
        pytest.skip("a CUDA device is visible here")
    with pytest.raises(SystemExit):
        main(["--out", str(tmp_path / "wm"), *argv])
    assert says in capsys.readouterr().err
    assert not (tmp_path / "wm").exists()


def test_pack_keeps_the_split_and_the_fonts_still_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from clipaudit.calibrate.photo_split import is_tune, part_of
    from clipaudit.safety.visible.pack import pack

    photos = tmp_path / "photos"
    rng = np.random.default_rng(0)
    for i in range(40):
        d = photos / f"src{i % 2}"
        d.mkdir(parents=True, exist_ok=True)
        arr = rng.integers(0, 255, (300, 400, 3), dtype=np.uint8)
        Image.fromarray(arr).save(d / f"p{i:02d}.jpg", quality=90)
    two = dict(list(marks.fonts().items())[:2])
    monkeypatch.setattr(marks, "fonts", lambda: two)
    rec = pack(photos, tmp_path / "pack", max_side=128, quality=80)

    fit = sorted(
        p.relative_to(photos).as_posix()
        for p in photos.rglob("*.jpg")
        if part_of(p.relative_to(photos).as_posix()) == "calibration"
        and not is_tune(p.relative_to(photos).as_posix())
    )
    got = sorted(p.relative_to(tmp_path / "pack" / "photos").as_posix()
                 for p in (tmp_path / "pack" / "photos").rglob("*.jpg"))  # fmt: skip
    assert got == fit and rec["photos"] == len(fit) > 0
    # The packed folder's fit part is the same photos, smaller, and they decode.
    loaded = vd.load_photos(tmp_path / "pack" / "photos", "fit")
    assert sorted(loaded) == fit and max(max(im.size) for im in loaded.values()) == 128
    assert vd.load_photos(tmp_path / "pack" / "photos", "tune") == {}
    # The cut fonts are found through $CLIPAUDIT_FONT_DIRS and still draw distinct letters.
    packed = sorted((tmp_path / "pack" / "fonts").iterdir())
    assert [p.stem for p in packed] == sorted(two)
    assert all(p.stat().st_size < two[p.stem].stat().st_size for p in packed)
    assert all(marks._draws_letters(p) for p in packed)
    monkeypatch.undo()
    monkeypatch.setenv(marks.FONT_DIRS_ENV, str(tmp_path / "pack" / "fonts"))
    marks.fonts.cache_clear()
    marks.load_font.cache_clear()
    try:
        assert sorted(marks.fonts()) == sorted(two)
        assert marks.fonts()[sorted(two)[0]].parent == tmp_path / "pack" / "fonts"
        font = marks.load_font(sorted(two)[0], 20)
        assert font.getbbox("© Photo 2024")[2] > 40
    finally:
        monkeypatch.delenv(marks.FONT_DIRS_ENV)
        marks.fonts.cache_clear()
        marks.load_font.cache_clear()
    assert len(marks.fonts()) > 2


def test_a_time_budget_ends_the_run_and_keeps_what_it_learned(tmp_path: Path) -> None:
    from clipaudit.safety.visible.detector import load_from
    from clipaudit.safety.visible.train import TrainConfig, train

    cfg = TrainConfig(out=str(tmp_path / "wm"), evaluate=False, seconds=1.5,
                      **{**TINY, "steps": 100_000})  # fmt: skip
    t = train(cfg, log=False)["training"]
    assert cfg.warmup < t["steps_done"] < 100_000  # the clock, not the step count, ended it
    assert len(t["losses_every_10"]) == -(-t["steps_done"] // 10)
    assert load_from(tmp_path / "wm").sha256 == t["weights_sha256"]
