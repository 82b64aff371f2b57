"""``clipaudit train``: contrastive training of a small open_clip CLIP on the synthetic world.

Images are rendered once (in parallel) into a uint8 tensor at the model's input size, then
trained on with open_clip's ``ClipLoss``. Seeded: the same config on the same machine gives
the same weights. The output folder is a ``local-dir:`` model (``open_clip_config.json`` +
``open_clip_model.safetensors`` in fp16) that open_clip itself can load.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from clipaudit.errors import ClipauditError
from clipaudit.models.loader import CONFIG_DIR
from clipaudit.models.provenance import library_versions


@dataclass
class TrainConfig:
    steps: int = 2000
    batch_size: int = 128
    n_train: int = 60_000
    lr: float = 1e-3
    warmup: int = 100
    weight_decay: float = 0.1
    seed: int = 0
    render_size: int = 128  # rendered at 2× the input, then downsampled as inference does
    arch: str = "clipaudit-world"
    workers: int = 2


def _render_chunk(args: tuple[int, int, int, int, int]) -> tuple[np.ndarray, list[str]]:
    from clipaudit.world.splits import scenes

    seed, start, n, render_size, out_size = args
    arrs, caps = [], []
    for scene in scenes("train", n, seed=seed, start=start):
        im = scene.render(render_size)
        if out_size != render_size:
            im = im.resize((out_size, out_size), Image.Resampling.BICUBIC)
        arrs.append(np.asarray(im, np.uint8))
        caps.append(scene.caption)
    return np.stack(arrs), caps


def render_training_set(cfg: TrainConfig, image_size: int) -> tuple[torch.Tensor, list[str]]:
    chunk = 2000
    jobs = [
        (cfg.seed, s, min(chunk, cfg.n_train - s), cfg.render_size, image_size)
        for s in range(0, cfg.n_train, chunk)
    ]
    if cfg.workers > 1:
        with ProcessPoolExecutor(cfg.workers) as pool:
            parts = list(pool.map(_render_chunk, jobs))
    else:
        parts = [_render_chunk(j) for j in jobs]
    images = torch.from_numpy(np.concatenate([p[0] for p in parts])).permute(0, 3, 1, 2)
    captions = [c for p in parts for c in p[1]]
    return images.contiguous(), captions


def _param_groups(model: torch.nn.Module, wd: float) -> list[dict[str, Any]]:
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.ndim < 2 or "logit_scale" in name or "embedding" in name or "bn" in name:
            no_decay.append(p)
        else:
            decay.append(p)
    return [{"params": decay, "weight_decay": wd}, {"params": no_decay, "weight_decay": 0.0}]


def train_world_clip(
    cfg: TrainConfig, out: str | Path, log: Callable[[str], None] = print
) -> dict[str, Any]:
    """Train and write a ``local-dir:`` model folder under ``out``; returns the training record."""
    import open_clip
    from safetensors.torch import save_file

    out_path = Path(out)
    if out_path.exists() and any(out_path.iterdir()):
        raise ClipauditError(f"The output folder {str(out_path)!r} is not empty; choose a new one.")
    if cfg.steps < 1 or cfg.batch_size < 2 or cfg.n_train < cfg.batch_size:
        raise ClipauditError(
            f"Need steps ≥ 1, batch size ≥ 2 and n_train ≥ batch size; got steps={cfg.steps}, "
            f"batch_size={cfg.batch_size}, n_train={cfg.n_train}."
        )
    cfg_file = CONFIG_DIR / f"{cfg.arch}.json"
    if not cfg_file.is_file():
        names = ", ".join(sorted(p.stem for p in CONFIG_DIR.glob("*.json")))
        raise ClipauditError(f"Unknown training config {cfg.arch!r}; use one of: {names}.")
    model_cfg = json.loads(cfg_file.read_text())
    image_size = int(model_cfg["vision_cfg"]["image_size"])
    t0 = time.perf_counter()
    images, captions = render_training_set(cfg, image_size)
    t_render = time.perf_counter() - t0
    log(f"rendered {len(captions)} training scenes in {t_render:.0f} s")

    torch.manual_seed(cfg.seed)
    open_clip.add_model_config(cfg_file)
    model = open_clip.create_model(cfg.arch, output_dict=True)
    model.train()
    tokenizer = open_clip.get_tokenizer(cfg.arch)
    tokens = tokenizer(captions)
    mean = torch.tensor(open_clip.OPENAI_DATASET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(open_clip.OPENAI_DATASET_STD).view(1, 3, 1, 1)
    loss_fn = open_clip.ClipLoss()
    opt = torch.optim.AdamW(
        _param_groups(model, cfg.weight_decay), lr=cfg.lr, betas=(0.9, 0.98), eps=1e-6
    )
    gen = torch.Generator().manual_seed(cfg.seed)
    order = torch.randperm(len(captions), generator=gen)
    cursor = 0
    history: list[dict[str, float]] = []
    t1 = time.perf_counter()
    for step in range(cfg.steps):
        lr = (
            cfg.lr * (step + 1) / cfg.warmup
            if step < cfg.warmup
            else (
                0.5
                * cfg.lr
                * (1 + math.cos(math.pi * (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)))
            )
        )
        for g in opt.param_groups:
            g["lr"] = lr
        if cursor + cfg.batch_size > len(order):
            order = torch.randperm(len(captions), generator=gen)
            cursor = 0
        idx = order[cursor : cursor + cfg.batch_size]
        cursor += cfg.batch_size
        x = images[idx].float().div_(255)
        flip = torch.rand(len(idx), generator=gen) < 0.5
        x[flip] = x[flip].flip(-1)
        x = (x - mean) / std
        feats = model(x, tokens[idx])
        loss = loss_fn(feats["image_features"], feats["text_features"], feats["logit_scale"])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        if step % 50 == 0 or step == cfg.steps - 1:
            history.append(
                {
                    "step": step,
                    "loss": float(loss.detach()),
                    "lr": lr,
                    "logit_scale": float(model.logit_scale.detach().exp()),
                }
            )
            log(
                f"step {step:5d}/{cfg.steps}  loss {float(loss.detach()):.4f}  lr {lr:.2e}  "
                f"{time.perf_counter() - t1:.0f} s"
            )
    t_train = time.perf_counter() - t1
    model.eval()
    out_path.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to(torch.float16).contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(out_path / "open_clip_model.safetensors"))
    (out_path / "open_clip_config.json").write_text(
        json.dumps(
            {
                "model_cfg": model_cfg,
                "preprocess_cfg": {
                    "mean": list(open_clip.OPENAI_DATASET_MEAN),
                    "std": list(open_clip.OPENAI_DATASET_STD),
                    "interpolation": "bicubic",
                    "resize_mode": "shortest",
                },
            },
            indent=2,
        )
    )
    record = {
        "config": asdict(cfg),
        "model_cfg": model_cfg,
        "render_seconds": round(t_render, 1),
        "train_seconds": round(t_train, 1),
        "samples_seen": cfg.steps * cfg.batch_size,
        "threads": torch.get_num_threads(),
        "cpus": os.cpu_count(),
        "history": history,
        "versions": library_versions(),
    }
    (out_path / "train.json").write_text(json.dumps(record, indent=2))
    return record
