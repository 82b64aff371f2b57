from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from clipaudit.models import load_clip
from clipaudit.models.train import TrainConfig, train_world_clip


def test_train_50_steps_from_the_cli(tmp_path: Path) -> None:
    out = tmp_path / "m"
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "clipaudit",
            "train",
            "--out",
            str(out),
            "--steps",
            "50",
            "--n-train",
            "1000",
            "--batch-size",
            "32",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    # Its speed is a benchmark's business (train.json records the seconds), not this test's.
    assert r.returncode == 0, r.stderr
    assert "trained 50 steps" in r.stdout
    record = json.loads((out / "train.json").read_text())
    assert 1600 <= record["samples_seen"] <= 1650  # a twin may add one image to a batch
    losses = [h["loss"] for h in record["history"]]
    assert record["history"][-1]["step"] == 49
    assert losses[-1] < losses[0]  # it learns something in 50 steps
    # The folder is an open_clip local-dir model: open_clip itself loads it.
    import open_clip

    model, _, _preprocess = open_clip.create_model_and_transforms(f"local-dir:{out}")
    ours = load_clip(f"local-dir:{out}")
    assert ours.provenance.image_size == [64, 64]
    assert (
        ours.provenance.weights_sha256
        == hashlib.sha256((out / "open_clip_model.safetensors").read_bytes()).hexdigest()
    )
    tok = open_clip.get_tokenizer(f"local-dir:{out}")(["a red circle"])
    direct = model.encode_text(tok, normalize=True).detach().numpy()
    assert np.allclose(direct, ours.encode_texts(["a red circle"]), atol=1e-5)


def test_training_is_seeded(tmp_path: Path) -> None:
    cfg = TrainConfig(steps=3, n_train=64, batch_size=16, warmup=1, workers=1)
    train_world_clip(cfg, tmp_path / "a", log=lambda m: None)
    train_world_clip(cfg, tmp_path / "b", log=lambda m: None)
    a = (tmp_path / "a" / "open_clip_model.safetensors").read_bytes()
    b = (tmp_path / "b" / "open_clip_model.safetensors").read_bytes()
    assert a == b


def test_counterfactual_twins_differ_in_group_alone_and_share_a_batch() -> None:
    import torch

    from clipaudit.models.train import (
        TrainConfig,
        _unit_batches,
        counterfactual_twin,
        render_training_set,
    )
    from clipaudit.world.splits import scenes
    from clipaudit.world.vocab import BIASED_OCCUPATION

    people = [s for s in scenes("train", 200, seed=3) if s.person is not None]
    twins = [(s, counterfactual_twin(s)) for s in people]
    biased = [t for s, t in twins if s.person and s.person.occupation == BIASED_OCCUPATION]
    assert biased and all(t is None for t in biased)  # the planted bias keeps its 80/20
    pairs = [(s, t) for s, t in twins if t is not None]
    assert len(pairs) == len(people) - len(biased)
    for s, t in pairs:
        assert s.person is not None and t.person is not None
        assert {s.person.group, t.person.group} == {"zib", "mox"}
        assert (s.person.occupation, s.person.cx, s.person.clothing, s.seed) == (
            t.person.occupation,
            t.person.cx,
            t.person.clothing,
            t.seed,
        )
        if s.person.group in s.caption:  # the group word follows the image
            assert t.caption == s.caption.replace(s.person.group, t.person.group)
        else:
            assert t.caption == s.caption
    a = np.asarray(pairs[0][0].render(64), np.int16)
    b = np.asarray(pairs[0][1].render(64), np.int16)
    changed = np.abs(a - b).sum(-1) > 0
    assert 0 < changed.mean() < 0.1  # head and collar only

    data = render_training_set(TrainConfig(n_train=120, workers=1, twins=True), 32)
    # twins replace scenes: the image count and the objects/people mix stay those of the split
    assert abs(len(data.captions) - 120) <= 1
    assert sum(len(u) == 2 for u in data.units) >= 10
    assert sorted(i for u in data.units for i in u) == list(range(len(data.captions)))
    batch = next(_unit_batches(data.units, 16, torch.Generator().manual_seed(0)))
    flat = [i for u in batch for i in u]
    assert 16 <= len(flat) <= 17
    for u in batch:
        assert all(i in flat for i in u)
