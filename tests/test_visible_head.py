"""The visible-watermark detector's backbone kind: nudenet's first stages cut and pinned, a
head trained on their cached features, loaded through the detector registry."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from clipaudit.safety.visible import backbone as vb
from clipaudit.safety.visible import data as vd
from clipaudit.safety.visible.detector import ARCHS, CONFIG, load_from


def test_input_size_is_scoped() -> None:
    before = vd.INPUT_SIZE
    with vd.input_size(vb.INPUT_SIZE):
        assert vd.to_input(Image.new("RGB", (50, 80))).shape == (320, 320, 3)
    assert before == vd.INPUT_SIZE
    assert vd.to_input(Image.new("RGB", (50, 80))).shape == (before, before, 3)
    assert vd.to_input(Image.new("RGB", (50, 80)), 64).shape == (64, 64, 3)


def test_both_kinds_are_registered() -> None:
    assert {"VisibleNet", "BackboneHead"} <= set(ARCHS)


def test_backbone_refuses_another_input_size(tmp_path: Path) -> None:
    pytest.importorskip("onnx")
    vb.cut(tmp_path / "b.onnx")
    bb = vb.Backbone(tmp_path / "b.onnx", threads=1)
    p3, p4 = bb.features(np.zeros((3, 320, 320, 3), np.uint8))
    assert p3.shape == (3, *vb.P3_SHAPE) and p4.shape == (3, *vb.P4_SHAPE)
    assert p3.dtype == np.float16
    with pytest.raises(ValueError, match="is not 320x320x3"):
        bb.features(np.zeros((1, 160, 160, 3), np.uint8))


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    pytest.importorskip("onnx")
    pytest.importorskip("matplotlib", reason="the TRAIN fonts are matplotlib's bundled TTFs")
    from clipaudit.safety.visible.head_train import HeadConfig, run

    root = tmp_path_factory.mktemp("head")
    cfg = HeadConfig(out=str(root / "wm"), cache=str(root / "cache"), parts=2, pairs_per_part=32,
                     epochs=6, batch=16, lr=0.01, n_world=8, n_world_heldout=6, eval_pairs=12,
                     limit_pairs=6, threads=1)  # fmt: skip
    return root, {"cfg": cfg, "metrics": run(cfg, log=False)}


def test_head_training_learns_and_writes_a_loadable_folder(trained: tuple[Path, dict]) -> None:
    root, r = trained
    m, folder = r["metrics"], root / "wm"
    t = m["training"]
    assert t["pairs"] == 64 and t["loss_last"] < 0.8 * t["loss_first"], t
    assert set(m["thresholds"]) == {"fpr_0.005", "fpr_0.01", "fpr_0.05"}
    assert "real_photos" not in m  # no photo folder: no real-photo figures claimed
    card = (folder / "CARD.md").read_text()
    assert card.startswith("# clipaudit visible-watermark detector")
    assert t["backbone_sha256"] in card and "nudenet" in card
    det = load_from(folder)
    assert det.config["arch"] == "BackboneHead" and det.input_size == 320
    assert det.sha256 == t["weights_sha256"]
    s = det.score([Image.new("RGB", (50, 80)), Image.new("RGB", (300, 200), "white")])
    assert s.shape == (2,) and ((s >= 0) & (s <= 1)).all()
    assert det.to_input(Image.new("RGB", (50, 80))).shape == (320, 320, 3)


def test_head_training_is_seeded_and_reuses_its_cache(trained: tuple[Path, dict]) -> None:
    from clipaudit.safety.visible.head_train import HeadConfig, run

    root, r = trained
    cached = sorted((root / "cache").rglob("train*.npz"))
    assert len(cached) == 2
    stamps = [os.stat(p).st_mtime_ns for p in cached]
    cfg: HeadConfig = r["cfg"]
    again = run(HeadConfig(**{**vars(cfg), "out": str(root / "again")}), log=False)
    assert [os.stat(p).st_mtime_ns for p in cached] == stamps  # features read, not redrawn
    assert again["training"]["weights_sha256"] == r["metrics"]["training"]["weights_sha256"]
    assert again["thresholds"] == r["metrics"]["thresholds"]


def test_a_swapped_backbone_is_refused(trained: tuple[Path, dict]) -> None:
    root, _ = trained
    folder = root / "tampered"
    folder.mkdir()
    for f in (root / "wm").iterdir():
        (folder / f.name).write_bytes(f.read_bytes())
    config = json.loads((folder / CONFIG).read_text())
    config["backbone_sha256"] = "0" * 64
    (folder / CONFIG).write_text(json.dumps(config))
    with pytest.raises(ValueError, match="does not match the sha256"):
        load_from(folder)
    config["arch"] = "Nope"
    (folder / CONFIG).write_text(json.dumps(config))
    with pytest.raises(ValueError, match="names arch 'Nope'"):
        load_from(folder)


def test_head_train_refuses_bad_settings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from clipaudit.safety.visible.head_train import main

    with pytest.raises(SystemExit):
        main(["--out", str(tmp_path / "wm"), "--parts", "0"])
    assert "--parts 0: give 1 or more" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--out", str(tmp_path / "wm"), "--photos", str(tmp_path / "nowhere")])
    assert "is not a folder" in capsys.readouterr().err
    assert not (tmp_path / "wm").exists()


def test_remeasure_keeps_the_training_and_follows_new_labels(
    trained: tuple[Path, dict], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from clipaudit.calibrate.photo_split import part_of
    from clipaudit.safety.visible import head_train, train
    from clipaudit.safety.visible.detector import METRICS

    root, r = trained
    photos = tmp_path / "photos" / "things"
    photos.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for k in range(40):
        arr = rng.integers(0, 255, (8, 12, 3), np.uint8)
        Image.fromarray(arr).resize((240, 180)).save(photos / f"p{k:02d}.jpg")
    held = sorted(
        f"things/{p.name}" for p in photos.iterdir() if part_of(f"things/{p.name}") == "held_out"
    )
    folder = tmp_path / "wm"
    folder.mkdir()
    for f in (root / "wm").iterdir():
        (folder / f.name).write_bytes(f.read_bytes())

    def labelled(names: frozenset[str]) -> None:
        monkeypatch.setattr(train, "marked_photos", lambda: names)
        monkeypatch.setattr(head_train, "marked_photos", lambda: names)

    labelled(frozenset())
    first = head_train.remeasure(folder, tmp_path / "photos", threads=1, log=False)
    assert first["real_photos"]["n_photos"] == len(held) > 0
    labelled(frozenset(held[:1]))
    m = head_train.remeasure(folder, tmp_path / "photos", threads=1, log=False)
    assert m["real_photos"]["n_photos"] == len(held) - 1  # the labelled photo is no longer clean
    assert m["labels"]["measured_with"] == 1
    assert m["labels"]["trained_with"] == r["metrics"]["labels"]["trained_with"]
    assert m["training"] == r["metrics"]["training"]  # the training record is not rewritten
    assert json.loads((folder / METRICS).read_text())["labels"]["measured_with"] == 1
    assert (
        "measured again (`--remeasure`, no retraining) with 1" in (folder / "CARD.md").read_text()
    )
    # As many labels as the training saw, but other photos: the card still says so.
    n = r["metrics"]["labels"]["trained_with"]
    labelled(frozenset(held[:1]) | {f"elsewhere/{k}.jpg" for k in range(n - 1)})
    m = head_train.remeasure(folder, tmp_path / "photos", threads=1, log=False)
    assert m["labels"]["measured_with"] == n
    assert m["labels"]["measured_digest"] != m["labels"]["trained_digest"]
    assert "the same count, other photos" in (folder / "CARD.md").read_text()


def test_the_stage_exported_into_the_graph_computes_what_torch_computes(tmp_path: Path) -> None:
    pytest.importorskip("onnx")
    from clipaudit.safety.visible.stage_train import stage_from_cut, write_cut

    vb.cut(tmp_path / "b.onnx")
    stage = stage_from_cut(tmp_path / "b.onnx")
    x = vd.to_input(next(iter(vd.real_photos().values())), vb.INPUT_SIZE)[None]
    p3, p4 = vb.Backbone(tmp_path / "b.onnx", threads=1).features(x)
    with torch.inference_mode():
        before = stage(torch.from_numpy(p3.astype(np.float32))).numpy()
    assert np.abs(before - p4.astype(np.float32)).max() < 0.02  # fp16 cache, same weights
    with torch.no_grad():  # a changed stage, as training leaves it
        for conv in stage.convs():
            conv.weight.mul_(1.1)
    write_cut(tmp_path / "b.onnx", [stage], tmp_path / "t.onnx")
    _, q4 = vb.Backbone(tmp_path / "t.onnx", threads=1).features(x)
    with torch.inference_mode():
        after = stage(torch.from_numpy(p3.astype(np.float32))).numpy()
    assert np.abs(after - before).max() > 0.1  # the change shows in P4
    assert np.abs(after - q4.astype(np.float32)).max() < 0.02 * max(1.0, np.abs(after).max())
    again = stage_from_cut(tmp_path / "t.onnx")
    for a, b in zip(again.convs(), stage.convs(), strict=True):
        assert torch.allclose(a.weight, b.weight)


def test_both_stages_exported_compute_what_torch_computes_from_p2(tmp_path: Path) -> None:
    pytest.importorskip("onnx")
    from clipaudit.safety.visible.stage_train import FIRST, stage_from_cut, write_cut

    vb.cut(tmp_path / "b.onnx")
    vb.sub_cut(tmp_path / "b.onnx", [vb.P2_OUTPUT], tmp_path / "p2.onnx")
    x = vd.to_input(next(iter(vd.real_photos().values())), vb.INPUT_SIZE)[None]
    f = vb.Backbone(tmp_path / "p2.onnx", threads=1).named(x)
    assert list(f) == ["p2"] and f["p2"].shape == (1, 32, 80, 80)
    s8, s16 = stage_from_cut(tmp_path / "b.onnx", FIRST[8]), stage_from_cut(tmp_path / "b.onnx")
    p3, _ = vb.Backbone(tmp_path / "b.onnx", threads=1).features(x)
    p2 = torch.from_numpy(f["p2"].astype(np.float32))
    with torch.inference_mode():
        assert np.abs(s8(p2).numpy() - p3.astype(np.float32)).max() < 0.02
    with torch.no_grad():  # both stages changed, as training leaves them
        for conv in s8.convs() + s16.convs():
            conv.weight.mul_(1.1)
    write_cut(tmp_path / "b.onnx", [s8, s16], tmp_path / "t.onnx")
    q3, q4 = vb.Backbone(tmp_path / "t.onnx", threads=1).features(x)
    with torch.inference_mode():
        a3 = s8(p2)
        a4 = s16(a3).numpy()
    assert np.abs(a3.numpy() - p3.astype(np.float32)).max() > 0.1  # the change shows in P3
    for mine, got in ((a3.numpy(), q3), (a4, q4)):
        assert np.abs(mine - got.astype(np.float32)).max() < 0.02 * max(1.0, np.abs(mine).max())


def test_stage_training_writes_a_tuned_folder_that_loads(
    trained: tuple[Path, dict], tmp_path: Path
) -> None:
    from clipaudit.safety.visible.head_train import render_card
    from clipaudit.safety.visible.stage_train import (
        StageConfig,
        head_trained_with,
        run,
        stage_from_cut,
    )
    from clipaudit.safety.visible.train import labels_digest, labels_record, marked_photos

    root, r = trained
    cfg = StageConfig(init=str(root / "wm"), out=str(tmp_path / "wm2"), cache=str(root / "cache"),
                      steps=6, batch=16, lr=0.01, threads=1)  # fmt: skip
    m = run(cfg, log=False)
    st = m["training"]["stage"]
    assert st["parts_drawn_here"] == 0  # the head's cached features, not drawn again
    assert st["steps"] == 6 and st["inputs_seen"] == 96 and st["params"] > 100_000
    assert st["from"]["weights_sha256"] == r["metrics"]["training"]["weights_sha256"]
    assert st["export_max_abs_diff"] < 0.05
    # Trained and measured under today's labels, recorded as head_train records them, and
    # the labels the head itself was trained with beside them.
    head_with = r["metrics"]["labels"]["trained_with"]
    assert m["labels"] == {**labels_record(), "head_trained_with": head_with}
    assert labels_record() == r["metrics"]["labels"]
    assert m["labels"]["trained_digest"] == labels_digest(marked_photos())
    det = load_from(tmp_path / "wm2")
    assert det.config["arch"] == "BackboneHead"
    assert det.config["backbone_sha256"] == m["training"]["backbone_sha256"]
    assert det.config["backbone_sha256"] != r["metrics"]["training"]["backbone_sha256"]
    card = (tmp_path / "wm2" / "CARD.md").read_text()
    assert "its stride-16 stage fine-tuned" in card and "6 steps of 16" in card
    ims = [Image.new("RGB", (50, 80)), Image.fromarray(np.uint8(np.arange(256)).reshape(16, 16))]
    tuned, first = det.score(ims), load_from(root / "wm").score(ims)
    assert tuned.shape == (2,) and not np.allclose(tuned, first)  # other weights, other scores
    # A tuned folder can be tuned further: its stages are the start, its tuning is kept.
    m3 = run(StageConfig(init=str(tmp_path / "wm2"), out=str(tmp_path / "wm3"),
                         cache=str(tmp_path / "c3"), steps=2, batch=16, lr=0.01,
                         threads=1), log=False)  # fmt: skip
    st3 = m3["training"]["stage"]
    assert st3["from"]["stage"] == st
    assert st3["from"]["weights_sha256"] == m["training"]["weights_sha256"]
    assert st3["from"]["backbone_sha256"] == m["training"]["backbone_sha256"]
    assert st3["parts_drawn_here"] == 2  # P3 of the tuned graph's own cache key
    before, after = tmp_path / "wm2" / vb.BACKBONE, tmp_path / "wm3" / vb.BACKBONE
    a, b = stage_from_cut(before).convs()[0], stage_from_cut(after).convs()[0]
    assert 0 < float((a.weight - b.weight).detach().abs().max()) < 0.5  # moved on from wm2
    card3 = (tmp_path / "wm3" / "CARD.md").read_text()
    assert "going on from an earlier tuning of model.5 and model.6 (6 steps, `" in card3
    assert "320 px for the whole frame" in card3  # the limits name this kind's input size
    assert "the rest from nudenet's weights" not in card3  # stride 16 again: nothing fresh
    assert m3["labels"]["head_trained_with"] == head_with  # carried along the chain
    assert "The head was first trained while" not in card3  # the same labels throughout
    # A head trained under fewer labels than its tuning: the card says both counts.
    fewer = {**m3, "labels": {**m3["labels"], "head_trained_with": head_with - 1}}
    config = json.loads((tmp_path / "wm3" / CONFIG).read_text())
    assert (
        f"The head was first trained while {head_with - 1} photos were labelled as already"
        f" marked; the stage tuning above, with {head_with}."
    ) in render_card(fewer, config)
    # A tuning from before the head's labels were recorded says nothing rather than guess.
    older = {**m3, "labels": labels_record()}
    assert head_trained_with(older) is None
    assert head_trained_with(r["metrics"]) == head_with  # head_train's own folder


def test_stage_training_draws_fresh_parts_beyond_the_heads(
    trained: tuple[Path, dict], tmp_path: Path
) -> None:
    import shutil
    from dataclasses import replace

    from clipaudit.safety.visible.head_train import cached_parts, holds
    from clipaudit.safety.visible.stage_train import StageConfig, run

    root, r = trained
    cache = tmp_path / "cache"  # a copy: the module's cache stays as the other tests expect
    shutil.copytree(root / "cache", cache)
    cfg = StageConfig(init=str(root / "wm"), out=str(tmp_path / "wm2"), cache=str(cache),
                      parts=3, steps=6, batch=16, lr=0.01, threads=1)  # fmt: skip
    st = run(cfg, log=False)["training"]["stage"]
    assert st["parts_drawn_here"] == 1 and st["parts"] == 3 and st["inputs_cached"] == 3 * 2 * 32
    assert "--parts 3" in st["command"]
    (folder,) = cache.iterdir()
    fresh, first = folder / "train2.npz", folder / "train0.npz"
    assert holds(fresh, ("p3",)) and not holds(fresh, ("p4",)) and holds(first, ("p3", "p4"))
    with np.load(fresh) as a, np.load(first) as b:
        assert a["p3"].shape == b["p3"].shape and a["y"].tolist() == b["y"].tolist()
        assert not np.array_equal(a["p3"], b["p3"])  # its own seed: new views and marks
    # head_train needs P4, so it draws again a part the stage stored without it.
    bb = vb.Backbone(root / "wm" / vb.BACKBONE, 1)
    sha = r["metrics"]["training"]["backbone_sha256"]
    paths, drawn = cached_parts(replace(r["cfg"], parts=3, cache=str(cache)), bb, sha, log=False)
    assert drawn == 1 and holds(paths[2], ("p3", "p4")) and paths[2] == fresh


def test_stride8_tuning_trains_both_stages_over_cached_p2(
    trained: tuple[Path, dict], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from safetensors.torch import load_file

    from clipaudit.safety.visible.head_train import holds
    from clipaudit.safety.visible.stage_train import FIRST, StageConfig, main, run, stage_from_cut

    root, _ = trained
    cfg = StageConfig(init=str(root / "wm"), out=str(tmp_path / "wm8"), cache=str(tmp_path / "c"),
                      stride=8, steps=4, batch=16, lr=0.01, threads=1)  # fmt: skip
    m = run(cfg, log=False)
    st = m["training"]["stage"]
    assert st["stride"] == 8 and st["layers"] == "model.3 to model.6"
    assert st["parts_drawn_here"] == 2 and st["export_max_abs_diff"] < 0.05
    assert 330_000 < st["params"] < 350_000  # both stages: 68k + 271k
    (folder,) = [d for d in (tmp_path / "c").iterdir() if d.is_dir()]
    assert all(holds(p, ("p2",)) and not holds(p, ("p3",)) for p in folder.glob("train*.npz"))
    before, after = root / "wm" / vb.BACKBONE, tmp_path / "wm8" / vb.BACKBONE
    for first in FIRST.values():  # both stages moved away from nudenet's weights
        a, b = stage_from_cut(before, first).convs()[0], stage_from_cut(after, first).convs()[0]
        assert not torch.allclose(a.weight, b.weight)
    card = (tmp_path / "wm8" / "CARD.md").read_text()
    assert "its stride-8 and stride-16 stages fine-tuned" in card and "model.3 to model.6" in card
    det = load_from(tmp_path / "wm8")
    assert "model.3 to model.6 fine-tuned" in det.config["backbone_from"]
    assert det.config["backbone_sha256"] == m["training"]["backbone_sha256"]
    assert load_file(str(tmp_path / "wm8" / "model.safetensors"))  # the head, tuned with them
    with pytest.raises(SystemExit):
        main(["--init", str(root / "wm"), "--out", str(tmp_path / "x"), "--stride", "4"])
    assert "--stride 4: give 16" in capsys.readouterr().err


def test_tail_loss_is_the_marks_against_the_hardest_clean_inputs() -> None:
    from clipaudit.safety.visible.stage_train import tail_loss

    logits = torch.tensor([5.0, 0.0, -3.0, -9.0, 1.0, 2.0])
    y = torch.tensor([0.0, 0.0, 0.0, 0.0, 1.0, 1.0])
    sp = torch.nn.functional.softplus
    # k=1: only the clean input at 5 counts, against both marks
    want = (sp(torch.tensor(5.0 - 1.0)) + sp(torch.tensor(5.0 - 2.0))) / 2
    assert torch.isclose(tail_loss(logits, y, 1), want)
    want2 = sum(sp(torch.tensor(c - m)) for c in (5.0, 0.0) for m in (1.0, 2.0)) / 4
    assert torch.isclose(tail_loss(logits, y, 2), torch.as_tensor(want2))
    logits.requires_grad_(True)
    tail_loss(logits, y, 1).backward()
    assert logits.grad is not None
    g = logits.grad.tolist()
    assert g[0] > 0 and g[1] == g[2] == g[3] == 0.0 and g[4] < 0 and g[5] < 0
    assert tail_loss(logits, torch.zeros(6), 2).item() == 0.0  # no marks in the batch


def test_batches_mix_in_the_hard_clean_inputs() -> None:
    from clipaudit.safety.visible.stage_train import StageConfig, batches

    y = np.r_[np.zeros(100), np.ones(100)].astype(np.float32)
    cfg = StageConfig(init="", out="", batch=20)
    plain = batches(cfg, np.random.default_rng(0), y, np.zeros(0, np.int64))
    assert len(plain) == 10 and sorted(np.concatenate(plain).tolist()) == list(range(200))
    cfg.hard_share = 0.25
    hard = np.array([3, 7])
    mixed = batches(cfg, np.random.default_rng(0), y, hard)
    assert len(mixed) == 13 and all(len(b) == 20 for b in mixed)  # 15 plain + 5 hard a batch
    counts = np.bincount(np.concatenate(mixed), minlength=200)
    assert counts[3] + counts[7] >= 13 * 5  # the hard ones, drawn 5 a batch besides their turn
    # with no hard inputs found, the batches are the plain ones
    same = batches(cfg, np.random.default_rng(0), y, np.zeros(0, np.int64))
    assert all((a == b).all() for a, b in zip(same, plain, strict=True))


def test_the_card_says_how_a_tuning_loss_differed_from_bce() -> None:
    from clipaudit.safety.visible.head_train import loss_phrase
    from clipaudit.safety.visible.stage_train import StageConfig, loss_record

    assert loss_phrase({}) == "" and loss_phrase({"loss": loss_record(StageConfig("", ""))}) == ""
    cfg = StageConfig("", "", hard_share=0.25, hard_top=0.03, tail_weight=1.0, tail_k=4)
    phrase = loss_phrase({"loss": loss_record(cfg)})
    assert "25% of each batch from the 3% of a part's clean inputs" in phrase
    assert "BCE plus 1.0 × a pairwise loss between each mark and the batch's 4 highest" in phrase


@pytest.mark.parametrize(
    ("flag", "value", "said"),
    [("--hard-share", "1.5", "--hard-share 1.5: give a share of the batch in [0, 1)"),
     ("--hard-top", "0", "--hard-top 0.0: give a share of a part's clean inputs in (0, 1]"),
     ("--tail-k", "0", "give a weight of 0 or more and k of 1 or more")],
)  # fmt: skip
def test_stage_train_refuses_bad_tail_settings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flag: str, value: str, said: str
) -> None:
    from clipaudit.safety.visible.stage_train import main

    init = tmp_path / "init"
    init.mkdir()
    (init / "metrics.json").write_text("{}")
    with pytest.raises(SystemExit):
        main(["--init", str(init), "--out", str(tmp_path / "x"), flag, value])
    assert said in capsys.readouterr().err
