from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from clipaudit.models import load_clip
from clipaudit.models.train import TrainConfig, train_world_clip


def test_train_50_steps_from_the_cli(tmp_path: Path) -> None:
    out = tmp_path / "m"
    t0 = time.perf_counter()
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
    elapsed = time.perf_counter() - t0
    assert r.returncode == 0, r.stderr
    assert elapsed < 120, elapsed
    assert "trained 50 steps" in r.stdout
    record = json.loads((out / "train.json").read_text())
    assert record["samples_seen"] == 1600
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
