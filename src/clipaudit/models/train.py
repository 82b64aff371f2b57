"""``clipaudit train``: contrastive training of a small open_clip CLIP on the synthetic world.

Images are rendered once (in parallel) into a uint8 tensor at the model's input size, then
trained on with open_clip's ``ClipLoss``. Seeded: the same config on the same machine gives
the same weights. ``fit`` is the loop alone, for callers that bring their own images and
captions (``clipaudit ablate``).

Counterfactual twins (``twins=True``): every other person of an occupation the world does
not bias comes with a twin (in place of the next such person) that differs only in group
(same pixel stream, head and collar swapped, the group word swapped where the caption
names it), in the same batch. With a caption that
names no group, the two images share the text, so the contrastive loss is balanced only when
both score the same: a direct pull towards group-blind occupation words, which ordinary
50/50 data gives only on average. The biased occupation gets no twins, so its planted
80/20 co-occurrence is untouched.

The output folder is a ``local-dir:`` model (``open_clip_config.json`` +
``open_clip_model.safetensors`` in fp16) that open_clip itself can load.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from PIL import Image

from clipaudit.errors import ClipauditError
from clipaudit.models.loader import CONFIG_DIR
from clipaudit.models.provenance import library_versions
from clipaudit.world.scenes import Scene


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
    init: str | None = None  # a model spec to start from (e.g. bundled:world-clip)
    twins: bool = True  # counterfactual twins (the shipped recipe); False: the plain split
    device: str = "cpu"  # "cuda" trains on a GPU (fast, but not bit-identical to CPU runs)


def counterfactual_twin(scene: Scene) -> Scene | None:
    """The same scene with the person's group swapped, or None where no twin is wanted."""
    from clipaudit.world.vocab import BIASED_OCCUPATION, GROUPS

    p = scene.person
    if p is None or p.occupation == BIASED_OCCUPATION:
        return None
    other = next(g for g in sorted(GROUPS) if g != p.group)
    caption = scene.caption.replace(f"{p.group} {p.occupation}", f"{other} {p.occupation}")
    return replace(scene, person=replace(p, group=other), caption=caption)


def _render_chunk(
    args: tuple[int, int, int, int, int, bool],
) -> tuple[np.ndarray, list[str], list[int]]:
    """Images, captions and, per image, the chunk-local index of its twin (-1: none)."""
    from clipaudit.world.splits import scenes

    seed, start, n, render_size, out_size, twins = args
    arrs, caps, partner = [], [], []

    def add(scene: Scene) -> None:
        im = scene.render(render_size)
        if out_size != render_size:
            im = im.resize((out_size, out_size), Image.Resampling.BICUBIC)
        arrs.append(np.asarray(im, np.uint8))
        caps.append(scene.caption)
        partner.append(-1)

    pending_skip = False
    for scene in scenes("train", n, seed=seed, start=start):
        twin = counterfactual_twin(scene) if twins else None
        if twin is not None and pending_skip:
            # A twin takes the place of the next unbiased person, so the mix of objects and
            # people (and the number of images) stays that of the plain split.
            pending_skip = False
            continue
        add(scene)
        if twin is not None:
            add(twin)
            partner[-2], partner[-1] = len(arrs) - 1, len(arrs) - 2
            pending_skip = True
    return np.stack(arrs), caps, partner


@dataclass
class TrainingSet:
    images: torch.Tensor  # uint8, N × 3 × H × W
    captions: list[str]
    units: list[list[int]]  # indices that must share a batch (a scene and its twin)


def render_training_set(cfg: TrainConfig, image_size: int) -> TrainingSet:
    chunk = 2000
    jobs = [
        (cfg.seed, s, min(chunk, cfg.n_train - s), cfg.render_size, image_size, cfg.twins)
        for s in range(0, cfg.n_train, chunk)
    ]
    if cfg.workers > 1:
        with ProcessPoolExecutor(cfg.workers) as pool:
            parts = list(pool.map(_render_chunk, jobs))
    else:
        parts = [_render_chunk(j) for j in jobs]
    images = torch.from_numpy(np.concatenate([p[0] for p in parts])).permute(0, 3, 1, 2)
    captions = [c for p in parts for c in p[1]]
    units: list[list[int]] = []
    offset = 0
    for _, caps, partner in parts:
        for i, j in enumerate(partner):
            if j < 0:
                units.append([offset + i])
            elif j > i:
                units.append([offset + i, offset + j])
        offset += len(caps)
    return TrainingSet(images.contiguous(), captions, units)


def _param_groups(model: torch.nn.Module, wd: float) -> list[dict[str, Any]]:
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.ndim < 2 or "logit_scale" in name or "embedding" in name or "bn" in name:
            no_decay.append(p)
        else:
            decay.append(p)
    return [{"params": decay, "weight_decay": wd}, {"params": no_decay, "weight_decay": 0.0}]


def _plain_batches(n: int, batch_size: int, gen: torch.Generator) -> Iterator[list[list[int]]]:
    """The original recipe's draw: a permutation per epoch, its ragged tail skipped."""
    order = torch.randperm(n, generator=gen)
    cursor = 0
    while True:
        if cursor + batch_size > n:
            order = torch.randperm(n, generator=gen)
            cursor = 0
        yield [[int(i)] for i in order[cursor : cursor + batch_size]]
        cursor += batch_size


def _unit_batches(
    units: list[list[int]], batch_size: int, gen: torch.Generator
) -> Iterator[list[list[int]]]:
    """Shuffled batches of whole units (a twin never leaves its scene's batch)."""
    order: list[int] = []
    cursor = 0
    while True:
        batch: list[list[int]] = []
        filled = 0
        while filled < batch_size:
            if cursor >= len(order):
                order = torch.randperm(len(units), generator=gen).tolist()
                cursor = 0
            batch.append(units[order[cursor]])
            filled += len(units[order[cursor]])
            cursor += 1
        yield batch


def fit(
    model: torch.nn.Module,
    images: torch.Tensor,
    tokens: torch.Tensor,
    cfg: TrainConfig,
    units: list[list[int]] | None = None,
    log: Callable[[str], None] = print,
) -> tuple[list[dict[str, float]], int]:
    """Contrastive training of ``model`` in place: AdamW, warmup then cosine, random h-flips.

    ``images`` are uint8 N × 3 × H × W at the model's input size, ``tokens`` the tokenised
    captions, ``units`` groups of indices that share a batch and a flip (default: each
    image alone). Returns the loss history (every 50 steps and the last) and samples seen.
    """
    import open_clip

    dev = torch.device(cfg.device)
    model.to(dev).train()
    logit_scale = cast(torch.Tensor, model.logit_scale)
    mean = torch.tensor(open_clip.OPENAI_DATASET_MEAN, device=dev).view(1, 3, 1, 1)
    std = torch.tensor(open_clip.OPENAI_DATASET_STD, device=dev).view(1, 3, 1, 1)
    loss_fn = open_clip.ClipLoss()
    opt = torch.optim.AdamW(
        _param_groups(model, cfg.weight_decay), lr=cfg.lr, betas=(0.9, 0.98), eps=1e-6
    )
    gen = torch.Generator().manual_seed(cfg.seed)
    plain = units is None
    batches = (
        _plain_batches(len(images), cfg.batch_size, gen)
        if units is None
        else _unit_batches(units, cfg.batch_size, gen)
    )
    history: list[dict[str, float]] = []
    seen = 0
    t1 = time.perf_counter()
    for step in range(cfg.steps):
        batch = next(batches)
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
        idx = torch.tensor([i for unit in batch for i in unit])
        seen += len(idx)
        x = images[idx].float().div_(255)
        if plain:  # the draw of the original recipe, so its weights stay reproducible
            flip = torch.rand(len(idx), generator=gen) < 0.5
        else:  # one draw per unit: a twin is flipped with its scene
            per_unit = torch.rand(len(batch), generator=gen) < 0.5
            flip = per_unit.repeat_interleave(torch.tensor([len(u) for u in batch]))
        x[flip] = x[flip].flip(-1)
        x = (x.to(dev) - mean) / std
        feats = model(x, tokens[idx].to(dev))
        loss = loss_fn(feats["image_features"], feats["text_features"], feats["logit_scale"])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            logit_scale.clamp_(0, math.log(100))
        if step % 50 == 0 or step == cfg.steps - 1:
            history.append(
                {
                    "step": step,
                    "loss": float(loss.detach()),
                    "lr": lr,
                    "logit_scale": float(logit_scale.detach().exp()),
                }
            )
            log(
                f"step {step:5d}/{cfg.steps}  loss {float(loss.detach()):.4f}  lr {lr:.2e}  "
                f"{time.perf_counter() - t1:.0f} s"
            )
    model.to("cpu").eval()
    return history, seen


def new_model(cfg: TrainConfig) -> tuple[torch.nn.Module, dict[str, Any], Path]:
    """A seeded untrained model of ``cfg.arch``, or one holding the weights of ``cfg.init``."""
    import open_clip
    from safetensors.torch import load_file

    cfg_file = CONFIG_DIR / f"{cfg.arch}.json"
    if not cfg_file.is_file():
        names = ", ".join(sorted(p.stem for p in CONFIG_DIR.glob("*.json")))
        raise ClipauditError(f"Unknown training config {cfg.arch!r}; use one of: {names}.")
    model_cfg = json.loads(cfg_file.read_text())
    torch.manual_seed(cfg.seed)
    open_clip.add_model_config(cfg_file)
    # open_clip warns on the root logger that no pretrained weights were loaded: a model to
    # train from scratch (or from --init below) has none by design.
    logging.disable(logging.WARNING)
    try:
        model = open_clip.create_model(cfg.arch, output_dict=True)
    finally:
        logging.disable(logging.NOTSET)
    if cfg.init:
        from clipaudit.models.loader import resolve_spec

        resolved = resolve_spec(cfg.init)
        if resolved.weights is None or not resolved.model_name.startswith("local-dir:"):
            raise ClipauditError(
                f"Cannot start training from {cfg.init!r}; use a bundled:NAME or local-dir:DIR "
                "model of the same config."
            )
        init_cfg = json.loads(
            (
                Path(resolved.model_name.removeprefix("local-dir:")) / "open_clip_config.json"
            ).read_text()
        )["model_cfg"]
        if init_cfg != model_cfg:
            raise ClipauditError(
                f"The model {cfg.init!r} does not have the {cfg.arch!r} config; pass --arch "
                "with its config or start from scratch."
            )
        state = {k: v.float() for k, v in load_file(str(resolved.weights)).items()}
        model.load_state_dict(state)
    return model, model_cfg, cfg_file


def save_model(model: torch.nn.Module, model_cfg: dict[str, Any], out_path: Path) -> None:
    """Write an open_clip ``local-dir:`` folder (fp16 safetensors + config)."""
    import open_clip
    from safetensors.torch import save_file

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


def train_world_clip(
    cfg: TrainConfig, out: str | Path, log: Callable[[str], None] = print
) -> dict[str, Any]:
    """Train and write a ``local-dir:`` model folder under ``out``; returns the training record."""
    import open_clip

    out_path = Path(out)
    if out_path.exists() and (not out_path.is_dir() or any(out_path.iterdir())):
        raise ClipauditError(
            f"The output {str(out_path)!r} is a file or a folder that is not empty; choose a "
            "new folder."
        )
    if not (math.isfinite(cfg.lr) and cfg.lr > 0):
        raise ClipauditError(f"--lr must be a positive number, got {cfg.lr}.")
    from clipaudit.models.loader import pick_device

    pick_device(cfg.device)  # an unknown device, or cuda without one: one line, before work
    if cfg.steps < 1 or cfg.batch_size < 2 or cfg.n_train < cfg.batch_size:
        raise ClipauditError(
            f"Need steps ≥ 1, batch size ≥ 2 and n_train ≥ batch size; got steps={cfg.steps}, "
            f"batch_size={cfg.batch_size}, n_train={cfg.n_train}."
        )
    model, model_cfg, _ = new_model(cfg)
    image_size = int(model_cfg["vision_cfg"]["image_size"])
    t0 = time.perf_counter()
    data = render_training_set(cfg, image_size)
    t_render = time.perf_counter() - t0
    log(f"rendered {len(data.captions)} training images in {t_render:.0f} s")
    tokens = open_clip.get_tokenizer(cfg.arch)(data.captions)
    t1 = time.perf_counter()
    history, seen = fit(
        model, data.images, tokens, cfg, units=data.units if cfg.twins else None, log=log
    )
    t_train = time.perf_counter() - t1
    save_model(model, model_cfg, out_path)
    record = {
        "config": asdict(cfg),
        "model_cfg": model_cfg,
        "render_seconds": round(t_render, 1),
        "train_seconds": round(t_train, 1),
        "samples_seen": seen,
        "images": len(data.captions),
        "threads": torch.get_num_threads(),
        "cpus": os.cpu_count(),
        "history": history,
        "versions": library_versions(),
    }
    (out_path / "train.json").write_text(json.dumps(record, indent=2))
    return record
