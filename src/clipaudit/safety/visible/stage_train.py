"""A second training step for the visible-watermark detector: nudenet's stride-16 stage
(model.5 and model.6, 0.27 M parameters), or with ``--stride 8`` its stride-8 stage too,
fine-tuned together with a trained head.

    python -m clipaudit.safety.visible.stage_train --init DIR --photos ../shared/photos --out DIR2

Why: over frozen features the head stops near AUROC 0.91 on held-out real photos and its
training loss stays near 0.2; the features, not the head, are the limit. The stage after
P3 trains on the P3 features ``head_train`` already cached (``--init``'s recipe finds the
same cache, or draws it), so the first stages never run again during training and two CPU
cores suffice.

``--stride 8`` tunes the stride-8 stage (model.3 and model.4, 68k parameters) too, over
cached P2 features (32×80×80, 410 kB an input in fp16: twice P3, so 10 parts take 33 GB)
drawn from the same pairs as the P3 cache; a step costs about 1.8× the stride-16 one.

``--init`` may also be a folder this module wrote (the shipped detector, say): the tuning
goes on from its stages and head, and its own tuning is kept under ``stage.from``. The
cached features always come from below the stages being tuned, so they stay valid.

The result ships as the same kind of folder (``arch: BackboneHead``): the cut's graph with
the stage's weights replaced (``backbone.onnx``, sha256 pinned in the config) and the head's
weights. Scoring cost does not change. The exported graph's P3 and P4 are checked against
the trained torch stages before anything is written.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from torch import nn

from clipaudit.safety.visible import backbone as vb
from clipaudit.safety.visible import data as vd
from clipaudit.safety.visible.detector import CONFIG, METRICS, WEIGHTS, sha256_file, torch_threads

# YOLOv8n's stages as (first layer) → (in, out) channels: model.3/4 make P3 (stride 8) from
# P2, model.5/6 make P4 (stride 16) from P3.
CHANNELS = {3: (32, 64), 5: (64, 128)}
# The stage a tuning from stride s starts at; stride 8 tunes both stages.
FIRST = {8: 3, 16: 5}


def onnx_convs(first: int) -> tuple[str, ...]:
    """The stage's convolutions in the exported graph (batch norm already folded into them)."""
    c2f = f"model.{first + 1}"
    inner = (f"{c2f}.m.{i}.cv{j}.conv" for i in range(2) for j in (1, 2))
    return (f"model.{first}.conv", f"{c2f}.cv1.conv", *inner, f"{c2f}.cv2.conv")


def _conv_silu(cin: int, cout: int, k: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, k // 2), nn.SiLU())


class Stage(nn.Module):
    """A YOLOv8n stage as the exported graph computes it: model.``first`` (3×3 stride-2 conv)
    and model.``first+1`` (C2f, two residual bottlenecks). ``first=5``: P3 → P4;
    ``first=3``: P2 → P3."""

    def __init__(self, first: int = 5) -> None:
        super().__init__()
        cin, c = CHANNELS[first]
        self.first = first
        self.down = _conv_silu(cin, c, 3, 2)
        self.cv1 = _conv_silu(c, c, 1)
        self.m = nn.ModuleList(
            nn.Sequential(_conv_silu(c // 2, c // 2, 3), _conv_silu(c // 2, c // 2, 3))
            for _ in range(2)
        )
        self.cv2 = _conv_silu(2 * c, c, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = list(self.cv1(self.down(x)).chunk(2, 1))
        for block in self.m:
            y.append(y[-1] + block(y[-1]))
        return self.cv2(torch.cat(y, 1))

    def convs(self) -> list[nn.Conv2d]:
        inner = [c for b in self.m for c in cast(nn.Sequential, b)]
        seq = [self.down, self.cv1, *inner, self.cv2]
        return [cast(nn.Conv2d, cast(nn.Sequential, s)[0]) for s in seq]


def load_convs(cut: Path, convs: list[nn.Conv2d], names: tuple[str, ...]) -> None:
    """Copy the cut graph's weights (batch norm folded in) into ``convs``, named ``names``."""
    import onnx
    from onnx import numpy_helper

    w = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(cut)).graph.initializer}
    with torch.no_grad():
        for conv, name in zip(convs, names, strict=True):
            conv.weight.copy_(torch.from_numpy(w[f"{name}.weight"].copy()))
            assert conv.bias is not None
            conv.bias.copy_(torch.from_numpy(w[f"{name}.bias"].copy()))


def stage_from_cut(cut: Path, first: int = 5) -> Stage:
    """The stage with the weights the cut graph holds."""
    stage = Stage(first)
    load_convs(cut, stage.convs(), onnx_convs(first))
    return stage


def write_cut(src: Path, stages: list[Stage], out: Path) -> str:
    """``src``'s graph with the stages' weights put in place of its own; returns the sha256."""
    return write_convs(src, [(s.convs(), onnx_convs(s.first)) for s in stages], out)


def write_convs(src: Path, tuned: list[tuple[list[nn.Conv2d], tuple[str, ...]]], out: Path) -> str:
    """``src``'s graph with each (convolutions, their names in the graph) put in place of its
    own weights; returns the sha256 of the graph written to ``out``."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(src))
    new = {}
    for convs, names in tuned:
        for conv, name in zip(convs, names, strict=True):
            assert conv.bias is not None
            new[f"{name}.weight"] = conv.weight.detach().numpy()
            new[f"{name}.bias"] = conv.bias.detach().numpy()
    for init in model.graph.initializer:
        if init.name in new:
            init.CopyFrom(numpy_helper.from_array(new.pop(init.name).astype(np.float32), init.name))
    if new:
        raise ValueError(f"{src} lacks the weights {sorted(new)}: not nudenet's cut")
    out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(out))
    return sha256_file(out)


class StageHead(nn.Module):
    """What is trained: P3 → stride-16 stage → head, or with ``stage8`` P2 → stride-8 stage →
    P3 → stride-16 stage → head."""

    def __init__(self, stage: Stage, head: vb.Head, stage8: Stage | None = None) -> None:
        super().__init__()
        self.stage, self.head, self.stage8 = stage, head, stage8

    def stages(self) -> list[Stage]:
        return [s for s in (self.stage8, self.stage) if s is not None]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p3 = self.stage8(x) if self.stage8 is not None else x
        return self.head(p3, self.stage(p3))


@dataclass
class StageConfig:
    # a trained BackboneHead folder: head_train's output, or a tuned one to go on from
    # (head, recipe, cut; the features cached for the stage are always below what is tuned)
    init: str
    out: str
    photos: str = ""
    cache: str = "/tmp/clipaudit-visible-head"  # head_train's feature cache
    steps: int = 3200
    # 0: the parts head_train drew (its recipe's); more draws fresh pairs into the same cache,
    # part k from its own seed, so a longer run sees new views and marks, not repeats.
    parts: int = 0
    # 16: tune the stride-16 stage over cached P3; 8: the stride-8 stage too, over cached P2
    # (twice the disk a part and about 1.8× the step cost).
    stride: int = 16
    batch: int = 128
    lr: float = 3e-4  # peak, for head and stage alike; 50 steps of warm-up, then cosine
    weight_decay: float = 1e-4
    seed: int = 0
    threads: int = 2
    # The low-rate tail: a pack threshold sits where ~1% of clean photos are flagged, so what
    # limits detection there is the few clean inputs that score like marks. ``hard_share`` of
    # each batch is drawn from the ``hard_top`` share of the part's clean inputs that the
    # model scores highest (scored when the part is loaded), and ``tail_weight`` adds a
    # pairwise loss between each mark and the batch's ``tail_k`` highest clean inputs.
    # 0 and 0: plain BCE over shuffled inputs (the shipped tunings).
    hard_share: float = 0.0
    hard_top: float = 0.05
    tail_weight: float = 0.0
    tail_k: int = 4


def part_logits(model: StageHead, x: np.ndarray, idx: np.ndarray, batch: int = 256) -> np.ndarray:
    """The model's logits over a part's cached inputs ``x[idx]`` (eval mode, no gradients;
    a batch at a time, so the part is not copied)."""
    model.eval()
    out = []
    with torch.inference_mode():
        for i in range(0, len(idx), batch):
            xb = torch.from_numpy(x[idx[i : i + batch]].astype(np.float32))
            out.append(model(xb).numpy())
    model.train()
    return np.concatenate(out)


def tail_loss(logits: torch.Tensor, y: torch.Tensor, k: int) -> torch.Tensor:
    """Mean softplus(clean - mark) over every mark and the ``k`` highest-scoring clean
    inputs of the batch: a surrogate of the ROC curve's start, where a pack threshold is."""
    clean, marks = logits[y < 0.5], logits[y > 0.5]
    if len(clean) == 0 or len(marks) == 0:
        return logits.sum() * 0.0
    top = clean.topk(min(k, len(clean))).values
    return nn.functional.softplus(top[None, :] - marks[:, None]).mean()


def batches(
    cfg: StageConfig, rng: np.random.Generator, y: np.ndarray, hard: np.ndarray
) -> list[np.ndarray]:
    """One pass over a part in batches of ``cfg.batch``: shuffled inputs, with
    ``cfg.hard_share`` of each batch replaced by draws from ``hard`` (indices of the part's
    hardest clean inputs; empty: none)."""
    perm = rng.permutation(len(y))
    n_hard = round(cfg.hard_share * cfg.batch) if len(hard) else 0
    n_plain = cfg.batch - n_hard
    out = []
    for i in range(0, len(y) - n_plain + 1, n_plain):
        ix = perm[i : i + n_plain]
        if n_hard:
            ix = np.r_[ix, rng.choice(hard, n_hard)]
        out.append(np.sort(ix))
    return out


def train_stage(cfg: StageConfig, model: StageHead, parts: list[Path], log: bool) -> list[float]:
    """``cfg.steps`` steps over the cached parts (one part in memory at a time, parts in a
    shuffled order and inputs shuffled within, over and over)."""
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    opt = torch.optim.AdamW(model.parameters(), cfg.lr, weight_decay=cfg.weight_decay)
    bce = nn.functional.binary_cross_entropy_with_logits
    losses: list[float] = []
    model.train()
    step = 0
    while step < cfg.steps:
        for k in rng.permutation(len(parts)).tolist():
            with np.load(parts[k]) as z:
                x, y = z["p2" if model.stage8 is not None else "p3"], z["y"]
            hard = np.zeros(0, np.int64)
            if cfg.hard_share > 0:
                clean = np.flatnonzero(y < 0.5)
                z_clean = part_logits(model, x, clean)
                n_top = max(1, round(cfg.hard_top * len(clean)))
                hard = clean[np.argsort(-z_clean)[:n_top]]
            for ix in batches(cfg, rng, y, hard):
                if step >= cfg.steps:
                    break
                warm = min(1.0, (step + 1) / 50)
                lr = cfg.lr * warm * 0.5 * (1 + math.cos(math.pi * step / cfg.steps))
                for g in opt.param_groups:
                    g["lr"] = lr
                logits = model(torch.from_numpy(x[ix].astype(np.float32)))
                target = torch.from_numpy(y[ix])
                loss = bce(logits, target)
                if cfg.tail_weight > 0:
                    loss = loss + cfg.tail_weight * tail_loss(logits, target, cfg.tail_k)
                opt.zero_grad()
                loss.backward()
                opt.step()
                losses.append(loss.item())
                step += 1
                if log and step % 200 == 0:
                    print(f"step {step}: loss {np.mean(losses[-200:]):.4f}", flush=True)
            if step >= cfg.steps:
                break
    model.eval()
    return losses


def run(cfg: StageConfig, log: bool = True) -> dict[str, Any]:
    """Fine-tune, export, check, measure; writes the detector folder, returns its metrics."""
    from safetensors.torch import load_file, save_file

    from clipaudit.safety.visible.head_train import (
        HeadConfig,
        cached_parts,
        eval_config,
        fit_names,
        render_card,
    )
    from clipaudit.safety.visible.train import data_record, evaluate, labels_record

    init, out = Path(cfg.init), Path(cfg.out)
    old_config = json.loads((init / CONFIG).read_text())
    old = json.loads((init / METRICS).read_text())
    rc = old["recipe"]["config"]
    if old_config.get("arch") != "BackboneHead":
        raise SystemExit(f"--init {init} is not a BackboneHead folder (head_train's output)")
    with torch_threads(cfg.threads), torch.random.fork_rng():
        src_cut = init / vb.BACKBONE
        src_sha = old_config["backbone_sha256"]
        backbone = vb.Backbone(src_cut, cfg.threads)
        hcfg = HeadConfig(out=str(out), photos=cfg.photos, cache=cfg.cache,
                          parts=cfg.parts or rc["parts"],
                          **{k: rc[k] for k in ("pairs_per_part", "n_world")})  # fmt: skip
        t0 = time.time()
        inputs, sha, key = backbone, src_sha, "p3"
        if cfg.stride == 8:  # its inputs are P2, from the frozen stages before it
            p2_cut = Path(cfg.cache) / f"p2-{src_sha[:16]}.onnx"
            sha, key = vb.sub_cut(src_cut, [vb.P2_OUTPUT], p2_cut), "p2"
            inputs = vb.Backbone(p2_cut, cfg.threads)
        parts, drawn = cached_parts(hcfg, inputs, sha, log, keep=(key,))
        t_feat = time.time() - t0
        head = vb.Head(int(old_config.get("width", 128)))
        head.load_state_dict(load_file(str(init / WEIGHTS)))
        stage8 = stage_from_cut(src_cut, FIRST[8]) if cfg.stride == 8 else None
        model = StageHead(stage_from_cut(src_cut), head, stage8)
        t1 = time.time()
        losses = train_stage(cfg, model, parts, log)
        t_train = time.time() - t1
        cut_sha = write_cut(src_cut, model.stages(), out / vb.BACKBONE)
        tuned = vb.Backbone(out / vb.BACKBONE, cfg.threads)
        gap = export_gap(inputs, tuned, model)
        scorer = vb.BackboneHead(tuned, head)
        ecfg = eval_config(cfg.out, cfg.photos, rc)
        t2 = time.time()
        with vd.input_size(vb.INPUT_SIZE):
            metrics = evaluate(lambda x: scorer.score(x), ecfg)
            data = data_record(len(fit_names(Path(cfg.photos))) if cfg.photos else 0, ecfg)
        t_eval = time.time() - t2
    save_file(vb.state(head), str(out / WEIGHTS))
    tuned_layers = "model.3 to model.6" if cfg.stride == 8 else "model.5 and model.6"
    config = {**old_config, "backbone_sha256": cut_sha,
              "backbone_from": old_config["backbone_from"] + f"; {tuned_layers} fine-tuned"
              " by clipaudit.safety.visible.stage_train"}  # fmt: skip
    (out / CONFIG).write_text(json.dumps(config, indent=2) + "\n")
    w = max(1, min(50, len(losses) // 4))
    training = dict(old["training"])
    training.update({
        "weights_bytes": (out / WEIGHTS).stat().st_size,
        "weights_sha256": sha256_file(out / WEIGHTS),
        "backbone_sha256": cut_sha,
        "stage": {
            "from": {"weights_sha256": old["training"]["weights_sha256"],
                     "backbone_sha256": old_config["backbone_sha256"],
                     # a tuned --init goes on from its stages; its own tuning is kept here
                     **({"stage": old["training"]["stage"]}
                        if old["training"].get("stage") else {})},
            "steps": cfg.steps, "batch": cfg.batch, "lr": cfg.lr,
            "stride": cfg.stride, "layers": tuned_layers, "loss": loss_record(cfg),
            "parts": len(parts), "inputs_cached": 2 * len(parts) * hcfg.pairs_per_part,
            "inputs_seen": cfg.steps * cfg.batch,
            "params": sum(p.numel() for st in model.stages() for p in st.parameters()),
            "loss_first": round(float(np.mean(losses[:w])), 4),
            "loss_last": round(float(np.mean(losses[-w:])), 4),
            "losses_every_100": [round(v, 4) for v in losses[::100]],
            "export_max_abs_diff": round(gap, 6),
            "seconds": {"features": round(t_feat, 1), "train": round(t_train, 1),
                        "eval": round(t_eval, 1)},
            "parts_drawn_here": drawn, "threads": cfg.threads, "machine": platform.machine(),
            "torch": torch.__version__, "command": command_for(cfg),
        },
    })  # fmt: skip
    metrics["training"] = training
    metrics["recipe"] = old["recipe"]
    metrics["data"] = data
    metrics["labels"] = {**labels_record(), "head_trained_with": head_trained_with(old)}
    (out / METRICS).write_text(json.dumps(metrics, indent=2) + "\n")
    (out / "CARD.md").write_text(render_card(metrics, config))
    return metrics


def loss_record(cfg: StageConfig) -> dict[str, Any]:
    """What the tuning minimised: BCE, and the low-rate tail's share where it was on."""
    out: dict[str, Any] = {"bce": 1.0}
    if cfg.hard_share > 0:
        out["hard_negatives"] = {"share_of_batch": cfg.hard_share, "top_of_part": cfg.hard_top}
    if cfg.tail_weight > 0:
        out["tail"] = {"weight": cfg.tail_weight, "top_clean_per_batch": cfg.tail_k}
    return out


def head_trained_with(old: dict[str, Any]) -> int | None:
    """How many photos were labelled as already marked when the head (head_train) was first
    trained: the stage tuning is trained with today's labels, and the head is not retrained,
    so both counts belong in the record. Carried along a chain of tunings; ``None`` where an
    earlier tuning did not record it."""
    lab = old.get("labels", {})
    if "head_trained_with" in lab:
        return lab["head_trained_with"]
    if old["training"].get("stage"):
        return None  # a tuning from before this was recorded
    return lab.get("trained_with", old["data"].get("photos_with_marks_skipped"))


def export_gap(inputs: vb.Backbone, tuned: vb.Backbone, model: StageHead) -> float:
    """Largest |P3| or |P4| difference between the exported graph and the torch stages on a
    real photo, the stages fed what they trained on (``inputs``: the frozen graph whose P2 or
    P3 the cache holds): the graph that ships must compute what was trained."""
    x = vd.to_input(next(iter(vd.real_photos().values())), vb.INPUT_SIZE)[None]
    p3, p4 = tuned.features(x)
    feed = inputs.named(x)["p2" if model.stage8 is not None else "p3"].astype(np.float32)
    with torch.inference_mode():
        mine3 = model.stage8(torch.from_numpy(feed)) if model.stage8 is not None else None
        mine4 = model.stage(mine3 if mine3 is not None else torch.from_numpy(feed)).numpy()
    pairs = [(mine4, p4)] + ([(mine3.numpy(), p3)] if mine3 is not None else [])
    gap = max(float(np.abs(mine - got.astype(np.float32)).max()) for mine, got in pairs)
    top = max(1.0, *(float(np.abs(mine).max()) for mine, _ in pairs))
    if gap > 0.02 * top:
        raise RuntimeError(f"the exported stage differs from the trained one by {gap:.4f}")
    return gap


def command_for(cfg: StageConfig) -> str:
    defaults = StageConfig(init="", out="")
    skip = ("init", "out", "photos", "cache")
    args = [f"--{k.replace('_', '-')} {v}" for k, v in asdict(cfg).items()
            if k not in skip and v != getattr(defaults, k)]  # fmt: skip
    photos = ["--photos PHOTOS"] if cfg.photos else []
    return " ".join(["python -m clipaudit.safety.visible.stage_train --init DIR --out DIR2",
                     *photos, *args])  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for f, v in asdict(StageConfig(init="", out="")).items():
        ap.add_argument(f"--{f.replace('_', '-')}", type=type(v), default=v,
                        required=f in ("init", "out"))  # fmt: skip
    args = ap.parse_args(argv)
    if not (Path(args.init) / METRICS).is_file():
        ap.error(f"--init {args.init} has no {METRICS}: give a folder head_train wrote")
    if args.photos and not Path(args.photos).is_dir():
        ap.error(f"--photos {args.photos} is not a folder; give the shared photos folder")
    for k in ("steps", "batch", "threads"):
        if getattr(args, k) < 1:
            ap.error(f"--{k} {getattr(args, k)}: give 1 or more")
    if args.stride not in FIRST:
        ap.error(f"--stride {args.stride}: give 16 (the stride-16 stage) or 8 (both stages)")
    if args.parts < 0:
        ap.error(f"--parts {args.parts}: give 0 (the recipe's parts) or more")
    if not 0 <= args.hard_share < 1:
        ap.error(f"--hard-share {args.hard_share}: give a share of the batch in [0, 1)")
    if not 0 < args.hard_top <= 1:
        ap.error(f"--hard-top {args.hard_top}: give a share of a part's clean inputs in (0, 1]")
    if args.tail_weight < 0 or args.tail_k < 1:
        ap.error(f"--tail-weight {args.tail_weight} --tail-k {args.tail_k}: give a weight"
                 " of 0 or more and k of 1 or more")  # fmt: skip
    m = run(StageConfig(**vars(args)))
    r = m.get("real_photos", {})
    short = {k: r[k] for k in ("auroc", "tpr", "fpr") if k in r}
    print(json.dumps({"thresholds": m["thresholds"], "real_photos": short}))


if __name__ == "__main__":
    main()
