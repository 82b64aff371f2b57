"""Train and measure the visible-watermark detector (seeded, CPU, one torch thread).

    python -m clipaudit.safety.visible.train --out DIR --photos ../shared/photos

writes ``model.safetensors``, ``config.json``, ``metrics.json`` and ``CARD.md`` to DIR. The
shipped detector is the output of that command with its defaults. Training draws pairs
(a clean view, the same view under an overlay) from TRAIN fonts, texts and logos over the
"fit" part of the photo folder and world scenes. Thresholds are chosen on the "tune" part
(whole photos, clean and under HELD_OUT marks); every reported figure is on the held-out part
(``calibrate.photo_split``) under HELD_OUT fonts, texts and logos. Photos that already carry a
mark (``photos_with_marks.json``) are never used as clean. Without ``--photos`` (tests) the
photographs installed packages ship stand in.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import platform
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from clipaudit.calibrate.intervals import wilson
from clipaudit.safety.visible import data as vd
from clipaudit.safety.visible.detector import (
    CONFIG,
    DEFAULT_DEPTHS,
    DEFAULT_WIDTHS,
    METRICS,
    WEIGHTS,
    VisibleNet,
    cnn_scores,
    sha256_file,
    to_tensor,
    torch_threads,
)
from clipaudit.safety.visible.stream import Pair, fresh_pair, mark_cells, worker_pairs

Score = Callable[[np.ndarray], np.ndarray]  # uint8 NHWC inputs → scores in [0, 1]

FPRS = (0.005, 0.01, 0.05)
FILES = (WEIGHTS, CONFIG, METRICS)  # what a trained folder holds (and CARD.md once measured)
MARKED_PHOTOS = Path(__file__).with_name("photos_with_marks.json")


def marked_photos() -> frozenset[str]:
    """Photos of ``../shared/photos`` found to carry a mark already (never used as clean)."""
    if not MARKED_PHOTOS.is_file():
        return frozenset()
    return frozenset(json.loads(MARKED_PHOTOS.read_text(encoding="utf-8"))["photos"])


def labels_digest(names: frozenset[str]) -> str:
    """A short hash of a label set: a relabelling that keeps the count still shows."""
    return hashlib.sha256("\n".join(sorted(names)).encode()).hexdigest()[:16]


def labels_record() -> dict[str, Any]:
    """The ``labels`` record of a folder trained and measured now: both under today's labels."""
    labels = marked_photos()
    digest = labels_digest(labels)
    return {"trained_with": len(labels), "measured_with": len(labels),
            "trained_digest": digest, "measured_digest": digest}  # fmt: skip


def rate_ci(scores: np.ndarray, thr: float) -> dict[str, Any]:
    k = int((scores >= thr).sum())
    return {"rate": round(k / len(scores), 4) if len(scores) else None, "k": k,
            "n": len(scores), "ci95": wilson(k, len(scores))}  # fmt: skip


@dataclass
class TrainConfig:
    out: str
    seed: int = 0
    steps: int = 2400
    batch_pairs: int = 32  # a batch holds this many clean + marked pairs
    fresh_pairs: int = 16  # newly drawn pairs a step; the rest are replayed from a buffer
    buffer: int = 4096
    refresh_every: int = 1  # draw fresh pairs every this many steps (smoke tests: never)
    lr: float = 3e-3
    weight_decay: float = 1e-4
    warmup: int = 30
    n_world: int = 800
    n_world_heldout: int = 400
    eval_pairs: int = 600  # per source (world, photo)
    limit_pairs: int = 300  # per limitation probe (world-native marks, natural text, ...)
    widths: list[int] = field(default_factory=lambda: list(DEFAULT_WIDTHS))
    depths: list[int] = field(default_factory=lambda: list(DEFAULT_DEPTHS))
    threads: int = 1
    photos: str = ""  # a folder of real photos; empty: the installed packages' three
    photo_share: float = 0.8  # of fresh pairs drawn over photos (the rest over world scenes)
    cell_weight: float = 1.0  # weight of the where-is-the-mark loss beside the image loss
    cell_pos_weight: float = 4.0  # mark cells are rare: weigh them up
    init: str = ""  # a detector folder to start from (a second stage of training)
    visible_only: bool = True  # redraw a training mark that changes no pixel by MARK_DIFF
    device: str = "cpu"  # where the net trains ("cuda" on a lent GPU); measured on the CPU
    workers: int = 0  # processes drawing fresh pairs ahead (0: the loop draws them itself)
    seconds: float = 0.0  # a time budget (a lent GPU): the schedule anneals by the clock and
    # the run stops when it is spent, at most ``steps``; 0: by steps alone, reproducible
    evaluate: bool = True  # false: weights and the training record only (measure later with
    # --steps 0 --init on the machine that holds the tune and held-out photos)


def threshold_at(clean: np.ndarray, fpr: float) -> float:
    """The lowest threshold with at most ``fpr`` of ``clean`` scoring at or above it."""
    s = np.sort(clean)[::-1]
    k = math.floor(fpr * len(s))
    return float(np.nextafter(np.float32(s[k]), np.float32(np.inf))) if k < len(s) else 0.0


def auroc(clean: np.ndarray, marked: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    y = np.r_[np.zeros(len(clean)), np.ones(len(marked))]
    return float(roc_auc_score(y, np.r_[clean, marked]))


def rate(scores: np.ndarray, thr: float) -> float:
    return round(float((scores >= thr).mean()), 4) if len(scores) else float("nan")


def source_metrics(clean: np.ndarray, marked: np.ndarray, thr: dict[str, float]) -> dict[str, Any]:
    own = {f"fpr_{f:g}": threshold_at(clean, f) for f in FPRS}
    return {
        "n_clean": len(clean),
        "n_marked": len(marked),
        "auroc": round(auroc(clean, marked), 4),
        # At this source's own thresholds (the FPR is then exact on its clean images).
        "tpr_at_own_fpr": {k: rate(marked, t) for k, t in own.items()},
        "own_thresholds": {k: round(t, 6) for k, t in own.items()},
        # At the shipped thresholds (pooled over world and photo clean images).
        "tpr_at_shipped": {k: rate(marked, t) for k, t in thr.items()},
        "fpr_at_shipped": {k: rate(clean, t) for k, t in thr.items()},
    }


def breakdown(
    marked: np.ndarray, ovs: list[vd.Overlay], thr: dict[str, float], key: Any
) -> dict[str, Any]:
    groups: dict[str, list[int]] = {}
    for i, ov in enumerate(ovs):
        groups.setdefault(str(key(ov)), []).append(i)
    return {
        g: {"n": len(ix), **{k: rate(marked[ix], t) for k, t in thr.items()}}
        for g, ix in sorted(groups.items())
    }


def _opacity_bin(ov: vd.Overlay) -> str:
    return "0.15-0.35" if ov.opacity < 0.35 else "0.35-0.6" if ov.opacity < 0.6 else "0.6-0.9"


def train(cfg: TrainConfig, log: bool = True) -> dict[str, Any]:
    """Train, measure, write the folder; returns the metrics record. The process's torch
    thread count and global RNG are restored afterwards (tests call this in-process)."""
    with torch_threads(cfg.threads), torch.random.fork_rng():
        torch.manual_seed(cfg.seed)
        return _train(cfg, log)


def _train(cfg: TrainConfig, log: bool) -> dict[str, Any]:
    rng = random.Random(f"visible-train:{cfg.seed}")
    t0 = time.time()
    folder = Path(cfg.photos) if cfg.photos else None
    # Measuring weights trained elsewhere (--steps 0) draws no training pair: no bank to load.
    bank = (vd.Bank.build("train", cfg.n_world, folder, "fit", skip=marked_photos())
            if cfg.steps else vd.Bank([], [], []))  # fmt: skip
    t_bank = time.time() - t0

    net = VisibleNet(cfg.widths, cfg.depths)
    if cfg.init:
        from safetensors.torch import load_file

        net.load_state_dict(load_file(str(Path(cfg.init) / WEIGHTS)))
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)

    def progress(step: int) -> float:
        """Share of the run done: by steps, or by the clock where that is further on."""
        p = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
        return max(p, (time.time() - t1) / cfg.seconds) if cfg.seconds else p

    def lr_at(step: int) -> float:
        if step < cfg.warmup:
            return cfg.lr * (step + 1) / cfg.warmup
        return cfg.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, progress(step))))

    device = torch.device(cfg.device)
    net.to(device)
    pos_weight = torch.tensor(cfg.cell_pos_weight, device=device)
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    if cfg.workers > 0:
        # Each step's pairs from its own (seed, step) stream; picks from a stream of their own.
        pick_rng = random.Random(f"visible-pick:{cfg.seed}")
        draw_steps = [s for s in range(cfg.steps) if s % cfg.refresh_every == 0]
        fresh_iter = worker_pairs(bank, draw_steps, cfg.workers, seed=cfg.seed,
                                  n=cfg.fresh_pairs, photo_share=cfg.photo_share,
                                  visible_only=cfg.visible_only)  # fmt: skip
    else:
        pick_rng = rng
    buf: deque[Pair] = deque(maxlen=cfg.buffer)
    losses: list[float] = []
    t1 = time.time()
    net.train()
    for step in range(cfg.steps):
        if cfg.seconds and time.time() - t1 >= cfg.seconds:
            break  # the time budget is spent (and the schedule, by the clock, has annealed)
        if step % cfg.refresh_every == 0:
            if cfg.workers > 0:
                buf.extend(next(fresh_iter))
            else:
                buf.extend(fresh_pair(rng, bank, cfg.photo_share, cfg.visible_only)
                           for _ in range(cfg.fresh_pairs))  # fmt: skip
        pick = [buf[pick_rng.randrange(len(buf))] for _ in range(cfg.batch_pairs)]
        x = to_tensor(np.stack([p[0] for p in pick] + [p[1] for p in pick])).to(device)
        y = torch.cat([torch.zeros(len(pick)), torch.ones(len(pick))]).to(device)
        marks = mark_cells(pick)
        where = torch.cat([torch.zeros_like(marks), marks]).to(device)
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        logits, cells = net.forward_both(x)
        loss = bce(logits, y) + cfg.cell_weight * bce(cells, where, pos_weight=pos_weight)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if log and (step % 50 == 0 or step == cfg.steps - 1):
            recent = float(np.mean(losses[-50:]))
            print(f"step {step:4d}  loss {recent:.4f}  {time.time() - t1:6.0f} s", flush=True)
    if cfg.workers > 0:
        fresh_iter.close()  # ends the workers, also when the clock stopped the run early
    net.to("cpu")
    t_train = time.time() - t1

    net.eval()
    t2 = time.time()
    metrics = evaluate(lambda x: cnn_scores(net, x), cfg) if cfg.evaluate else {}
    t_eval = time.time() - t2
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(out / WEIGHTS))
    config = {"arch": "VisibleNet", "widths": cfg.widths, "depths": cfg.depths,
              "input_size": vd.INPUT_SIZE}  # fmt: skip
    config["preprocess"] = "RGB, whole frame resized (bilinear) to input_size², x/255 - 0.5"
    (out / CONFIG).write_text(json.dumps(config, indent=2) + "\n")
    if cfg.steps == 0:
        # Measuring weights trained elsewhere (a GPU run): their training record and recipe
        # are the init folder's; this command only measured them.
        made = json.loads((Path(cfg.init) / METRICS).read_text(encoding="utf-8"))
        metrics["training"] = {**made["training"], "measured": {
            "seconds": round(t_eval, 1), "threads": torch.get_num_threads(),
            "machine": platform.machine(), "torch": torch.__version__}}  # fmt: skip
        metrics["recipe"] = {**made["recipe"], "measure_command": command_for(cfg)}
        metrics["data"] = made["data"]
    else:
        metrics["training"] = training_record(cfg, losses, out, t_bank, t_train, t_eval)
        metrics["training"]["steps_done"] = len(losses)  # one loss a step taken
        metrics["recipe"] = recipe_record(cfg)
        metrics["data"] = data_record(len(bank.photos), cfg)
    metrics["training"]["weights_sha256"] = sha256_file(out / WEIGHTS)
    (out / METRICS).write_text(json.dumps(metrics, indent=2) + "\n")
    if cfg.evaluate:
        (out / "CARD.md").write_text(card(metrics))
    return metrics


def training_record(
    cfg: TrainConfig, losses: list[float], out: Path, t_bank: float, t_train: float,
    t_eval: float,
) -> dict[str, Any]:  # fmt: skip
    net_params = VisibleNet(cfg.widths, cfg.depths).parameters()
    w = 10
    return {
        "loss_first": round(float(np.mean(losses[:w])), 4),
        "loss_last": round(float(np.mean(losses[-w:])), 4),
        "losses_every_10": [round(v, 4) for v in losses[::10]],
        "params": sum(p.numel() for p in net_params),
        "weights_bytes": (out / WEIGHTS).stat().st_size,
        "seconds": {
            "bank": round(t_bank, 1),
            "train": round(t_train, 1),
            "eval": round(t_eval, 1),
        },
        "threads": torch.get_num_threads(),
        "workers": cfg.workers,
        "device": torch.cuda.get_device_name() if cfg.device.startswith("cuda") else "cpu",
        "machine": platform.machine(),
        "torch": torch.__version__,
    }


def recipe_record(cfg: TrainConfig) -> dict[str, Any]:
    rec: dict[str, Any] = {
        "config": {
            k: (_PATH_ROLES[k] if k in _PATH_ROLES and v else v)
            for k, v in asdict(cfg).items()
            if k != "out"
        },
        "command": command_for(cfg),
    }
    init_metrics = Path(cfg.init) / METRICS if cfg.init else None
    if init_metrics is not None and init_metrics.is_file():
        # A second stage: the first stage's recipe travels with it.
        made = json.loads(init_metrics.read_text(encoding="utf-8"))
        t = made.get("training", {})
        rec["stage1"] = {
            "command": made.get("recipe", {}).get("command"),
            "config": made.get("recipe", {}).get("config"),
            "steps": made.get("recipe", {}).get("config", {}).get("steps"),
            "seconds": t.get("seconds", {}).get("train"),
            "loss_first": t.get("loss_first"),
            "loss_last": t.get("loss_last"),
            "weights_sha256": t.get("weights_sha256"),
        }
    return rec


def evaluate(score: Score, cfg: TrainConfig) -> dict[str, Any]:
    """Held-out overlays over held-out images. With a photo folder the thresholds are chosen
    on its tune part (whole photos) and the headline figures are its held-out part; without
    one, the thresholds are pooled over held-out world and installed-photo views."""
    bank = vd.Bank.build("heldout", cfg.n_world_heldout)
    rng = random.Random(f"visible-heldout:{cfg.seed}")
    res: dict[str, tuple[np.ndarray, np.ndarray, list[vd.Overlay]]] = {}
    for src in ("world", "photo"):
        c, m, ovs = bank.pairs(rng, cfg.eval_pairs, "heldout", src)
        res[src] = (score(c), score(m), ovs)
    clean_all = np.concatenate([res[s][0] for s in res])
    marked_all = np.concatenate([res[s][1] for s in res])
    ovs_all = [o for s in res for o in res[s][2]]
    out: dict[str, Any] = {}
    if cfg.photos:
        folder, skip = Path(cfg.photos), marked_photos()
        tune = vd.Bank.build("heldout", 0, folder, "tune", skip=skip)
        c, m, _ = tune.whole(random.Random(f"visible-tune:{cfg.seed}"), "heldout")
        tc, tm = score(c), score(m)
        thr = {f"fpr_{f:g}": threshold_at(tc, f) for f in FPRS}
        out["tune"] = source_metrics(tc, tm, thr)
        out["real_photos"] = real_photo_metrics(score, folder, skip, thr, cfg.seed)
    else:
        thr = {f"fpr_{f:g}": threshold_at(clean_all, f) for f in FPRS}
    held: dict[str, Any] = {s: source_metrics(res[s][0], res[s][1], thr) for s in res}
    held["all"] = source_metrics(clean_all, marked_all, thr)
    held["by_layout"] = breakdown(marked_all, ovs_all, thr, lambda o: o.layout)
    held["by_kind"] = breakdown(marked_all, ovs_all, thr, lambda o: o.kind)
    held["by_opacity"] = breakdown(marked_all, ovs_all, thr, _opacity_bin)
    held["world_texts"] = breakdown(
        marked_all, ovs_all, thr, lambda o: "world" if o.text in vd.WATERMARK_TEXTS else "other"
    )
    extra = limits(score, bank, thr, random.Random(f"visible-limits:{cfg.seed}"), cfg.limit_pairs)
    # The same held-out images under TRAIN-style overlays: the gap to held-out styles.
    c, m, _ = bank.pairs(
        random.Random(f"visible-seen:{cfg.seed}"), cfg.limit_pairs, "train", "world"
    )
    extra["train_style_overlays_on_heldout_world"] = {k: rate(score(m), t) for k, t in thr.items()}
    return {
        "thresholds": {k: round(t, 6) for k, t in thr.items()},
        **out,
        "heldout": held,
        "limits": extra,
    }


def real_photo_metrics(
    score: Score, folder: Path, skip: frozenset[str], thr: dict[str, float], seed: int
) -> dict[str, Any]:
    """Every held-out photo whole, clean and under one held-out mark, JPEG-saved alike:
    AUROC, detection and false-positive rates with 95% intervals, by style and by source."""
    held = vd.Bank.build("heldout", 0, folder, "held_out", skip=skip)
    c, m, ovs = held.whole(random.Random(f"visible-real:{seed}"), "heldout")
    sc, sm = score(c), score(m)
    src = np.array([n.split("/")[0] for n in held.photo_names])
    by_source = {
        s: {"fpr": {k: rate_ci(sc[src == s], t) for k, t in thr.items()},
            "tpr": {k: rate_ci(sm[src == s], t) for k, t in thr.items()}}
        for s in sorted(set(src.tolist()))
    }  # fmt: skip
    marked = sorted(p for p in skip if (folder / p).is_file())
    ims = vd.load_photos_named(folder, marked)
    already = score(np.stack([vd.to_input(im) for im in ims])) if ims else None
    return {
        "n_photos": len(sc),
        "auroc": round(auroc(sc, sm), 4),
        "fpr": {k: rate_ci(sc, t) for k, t in thr.items()},
        "tpr": {k: rate_ci(sm, t) for k, t in thr.items()},
        "by_source": by_source,
        "by_layout": breakdown(sm, ovs, thr, lambda o: o.layout),
        "by_effect": breakdown(sm, ovs, thr, lambda o: o.effect),
        "by_kind": breakdown(sm, ovs, thr, lambda o: o.kind),
        "by_opacity": breakdown(sm, ovs, thr, _opacity_bin),
        "photos_with_marks": (
            {"n": len(marked), **{k: rate_ci(already, t) for k, t in thr.items()}}
            if already is not None
            else {"n": 0}
        ),
    }


def world_native(rng: random.Random, bank: vd.Bank, n: int) -> np.ndarray:
    """Held-out world scenes under the world's own watermarks (what the demo pool plants)."""
    from clipaudit.world.render import overlay_watermark, watermark_spec
    from clipaudit.world.vocab import WATERMARK_TEXTS

    out = []
    for _ in range(n):
        im = rng.choice(bank.world)
        out.append(vd.to_input(overlay_watermark(im, watermark_spec(rng, WATERMARK_TEXTS))))
    return np.stack(out)


def natural_text(rng: random.Random, bank: vd.Bank, n: int) -> np.ndarray:
    """Clean views with opaque text on a plate (a sign, a caption bar): not watermarks,
    but text all the same; measures how often the detector fires on natural text."""
    from PIL import ImageDraw

    out = []
    for _ in range(n):
        im = vd.random_crop(rng, rng.choice(bank.photos + bank.world), 0.4)
        w, h = im.size
        font = vd.load_font(rng.choice(vd.available_fonts("heldout")), int(min(w, h) * 0.08))
        text = vd.draw_text(rng, "heldout")
        bb = font.getbbox(text)
        tw, th = int(bb[2]), int(bb[3])
        x, y = rng.randint(0, max(0, w - tw - 8)), rng.randint(0, max(0, h - th - 8))
        plate = tuple(rng.randint(0, 255) for _ in range(3))
        ink = (255, 255, 255) if sum(plate) < 380 else (0, 0, 0)
        d = ImageDraw.Draw(im)
        d.rectangle((x, y, x + tw + 8, y + th + 8), fill=plate)
        d.text((x + 4, y + 4), text, font=font, fill=ink)
        out.append(vd.to_input(im))
    return np.stack(out)


def limits(
    score: Score, bank: vd.Bank, thr: dict[str, float], rng: random.Random, n: int
) -> dict[str, Any]:
    wn = score(world_native(rng, bank, n))
    nt = score(natural_text(rng, bank, n))
    return {
        "world_native_overlays_tpr": {k: rate(wn, t) for k, t in thr.items()},
        "natural_text_flagged": {k: rate(nt, t) for k, t in thr.items()},
    }


def data_record(n_photos: int, cfg: TrainConfig) -> dict[str, Any]:
    from clipaudit.safety.visible import marks as vm

    photos = (
        f"PHOTOS (a folder of real photos): its fit part ({n_photos} photos: the "
        "calibration part of calibrate.photo_split minus its tune share, and minus "
        "photos_with_marks.json), longer side capped at 480 px"
        if cfg.photos
        else f"{', '.join(sorted(vd.real_photos()))} (each cut along its longer side: first "
        f"{vd.TRAIN_SHARE:.0%} train, rest held out)"
    )
    return {
        "photos": photos,
        "photos_with_marks_skipped": len(marked_photos()),
        "world": "eval-retrieval scenes (no watermarks), rendered at 256 px; "
        f"seed {vd.WORLD_SEED['train']} train, {vd.WORLD_SEED['heldout']} held out",
        "fonts": {s: list(vd.available_fonts(s)) for s in ("train", "heldout")},
        "held_out_families": sorted(vm.HELD_OUT_FAMILIES),
        "logos": {s: list(vd.logos_of(s)) for s in ("train", "heldout")},
        "texts": {
            "train": {
                "syllables": vm.TRAIN_SYLLABLES,
                "templates": vm.TRAIN_TEMPLATES,
                "fixed": vm.TRAIN_FIXED,
            },
            "heldout": {
                "fixed": vm.HELD_OUT_FIXED,
                "syllables": vm.HELD_OUT_SYLLABLES,
                "templates": vm.HELD_OUT_TEMPLATES,
            },
        },
        "overlay": "layout single/corner/center/tiled/band (3:3:2:2:2); kind text/logo/"
        "logo+text (6:2:2); effect fill/outline/stroke/shadow/emboss (10:2:2:2:2); height and "
        "opacity per layout: single 5-20% / 0.2-0.95, corner 2.5-7% / 0.45-1, center 12-40% / "
        "0.12-0.6, tiled 4-13% / 0.12-0.6, caption band 3-8% text on a bar of alpha 70-220; "
        "angle 0 or U(-45, 45) (corner and band: 0 or U(-8, 8)); white/grey/black or random "
        "colour",
        "views": "the whole photo half the time, else a crop keeping 40-100% of the shorter "
        "side (world 60-100%), aspect 0.75-1.33; flip; rescaled 0.6-1.6x within 96-480 px; "
        "brightness/contrast/saturation jitter, 10% grey; after the mark: blur 10%, noise "
        "15%, JPEG q40-95 60% (same for both halves)",
        "photo_share": cfg.photo_share,
    }


# Path-valued settings are recorded by role, never as this machine's paths.
_PATH_ROLES = {"photos": "PHOTOS", "init": "STAGE1"}


def command_for(cfg: TrainConfig) -> str:
    defaults = TrainConfig(out=cfg.out)
    args = [
        f"--{k.replace('_', '-')} {_PATH_ROLES.get(k, v)}"
        for k, v in asdict(cfg).items()
        if k not in ("out", "widths", "depths") and v != getattr(defaults, k)
    ]
    for k in ("widths", "depths"):
        if list(getattr(cfg, k)) != list(getattr(defaults, k)):
            args.append(f"--{k} " + " ".join(map(str, getattr(cfg, k))))
    return " ".join(["python -m clipaudit.safety.visible.train --out DIR", *args])


def _ci(r: dict[str, Any]) -> str:
    lo, hi = r["ci95"]
    return f"{r['rate']:.3f} [{lo:.3f}, {hi:.3f}] ({r['k']}/{r['n']})"


def _real_section(m: dict[str, Any]) -> str:
    if "real_photos" not in m:
        return (
            "## Real photographs\nNot measured: this detector was trained without a photo "
            "folder (`--photos`); its thresholds are pooled over held-out synthetic views.\n"
        )
    r, tune = m["real_photos"], m["tune"]

    def by(d: dict[str, Any]) -> str:
        return ", ".join(f"{g} {v['fpr_0.01']:.2f} (n={v['n']})" for g, v in d.items())

    rows = "\n".join(
        f"| {k.removeprefix('fpr_')} on tune | {m['thresholds'][k]:.6f} | {_ci(r['tpr'][k])} | "
        f"{_ci(r['fpr'][k])} |"
        for k in m["thresholds"]
    )
    src = "\n".join(
        f"| {s} | {_ci(v['fpr']['fpr_0.01'])} | {_ci(v['tpr']['fpr_0.01'])} |"
        for s, v in r["by_source"].items()
    )
    pm = r["photos_with_marks"]
    pm_line = (
        f"The {pm['n']} photos of the folder found to carry a mark already (listed in "
        "`photos_with_marks.json`, never used as clean) are flagged at the 1% threshold: "
        f"{_ci(pm['fpr_0.01'])}."
        if pm["n"]
        else "No photo of the folder was labelled as already carrying a mark."
    )
    return f"""## Real photographs (held-out part, never trained or tuned on)
Each of the {r["n_photos"]} held-out photos whole, once clean and once under one mark in a
held-out font, text and logo, both JPEG-saved alike; thresholds chosen on the clean tune
photos (a part of the calibration photos kept out of training; tune AUROC
{tune["auroc"]:.3f}). **AUROC {r["auroc"]:.3f}.** Rates with 95% Wilson intervals:

| threshold (FPR target) | value | detected (TPR) | clean flagged (FPR) |
|---|---|---|---|
{rows}

At the 1% threshold, by source (clothing photos carry printed text: real scene text, the hard
negatives):

| source | clean flagged | detected |
|---|---|---|
{src}

Detection at the 1% threshold by layout: {by(r["by_layout"])}; by effect: {by(r["by_effect"])};
by kind: {by(r["by_kind"])}; by opacity: {by(r["by_opacity"])}.

{pm_line}
"""


def _stage1(m: dict[str, Any]) -> str:
    st = m["recipe"].get("stage1")
    if not st:
        return ""
    return (
        f" This is a second stage: it starts from STAGE1, made by `{st['command']}` "
        f"({st['steps']} steps, {st['seconds']:.0f} s; loss {st['loss_first']:.3f} → "
        f"{st['loss_last']:.3f})."
    )


def _where(t: dict[str, Any]) -> str:
    dev = t.get("device", "cpu")
    where = f"{t['threads']} torch thread(s) ({t['machine']})"
    if dev != "cpu":
        where = f"{dev} with {where} and {t.get('workers', 0)} pair-drawing processes"
    return where


def _measured(t: dict[str, Any]) -> str:
    ms = t.get("measured")
    if not ms:
        return ""
    return (
        f" Trained there; measured here ({ms['seconds']:.0f} s on {ms['threads']} torch "
        f"thread(s), {ms['machine']}, torch {ms['torch']})."
    )


def card(m: dict[str, Any], about: str | None = None, training: str | None = None) -> str:
    """The detector's CARD.md; ``about`` (what it is, its input) and ``training`` replace
    this CNN's own sections for another kind (``visible.head_train``)."""
    h, t, lim = m["heldout"], m["training"], m["limits"]
    cfgr = m["recipe"]["config"]

    def row(name: str, s: dict[str, Any]) -> str:
        return (
            f"| {name} | {s['n_clean']} / {s['n_marked']} | {s['auroc']:.3f} | "
            f"{s['tpr_at_shipped']['fpr_0.01']:.3f} ({s['fpr_at_shipped']['fpr_0.01']:.3f}) | "
            f"{s['tpr_at_shipped']['fpr_0.05']:.3f} ({s['fpr_at_shipped']['fpr_0.05']:.3f}) |"
        )

    def rates(d: dict[str, Any]) -> str:
        return ", ".join(
            f"{g} {v['fpr_0.01']:.2f} / {v['fpr_0.05']:.2f} (n={v['n']})" for g, v in d.items()
        )

    data = m["data"]
    steps = t.get("steps_done", cfgr.get("steps"))  # fewer where a time budget stopped the run
    wn = lim["world_native_overlays_tpr"]
    ts = lim["train_style_overlays_on_heldout_world"]
    nt = lim["natural_text_flagged"]
    kib = t["weights_bytes"] / 1024
    about = (
        about
        or f"""A small CNN ({t["params"]:,} parameters, {kib:.0f} KiB fp32 safetensors)
that scores how likely an image carries a visible text or logo watermark, trained by the project
on synthetic marks over real photographs. Scores are **suspect flags against a threshold,
not verdicts**.

## Input
RGB, the whole frame resized (bilinear) to {m.get("input_size", vd.INPUT_SIZE)}² (aspect
squashed, nothing cropped away), scaled to [-0.5, 0.5]. Output: sigmoid probability.
"""
    )
    fresh = cfgr.get("fresh_pairs")
    training = (
        training
        or f"""{steps} steps, batch {cfgr.get("batch_pairs")} pairs ({fresh} fresh a
step, the rest replayed from a {cfgr["buffer"]}-pair buffer), AdamW lr {cfgr["lr"]} (warmup
{cfgr["warmup"]}, cosine), BCE. Loss {t["loss_first"]:.3f} → {t["loss_last"]:.3f}.
{t["seconds"]["train"]:.0f} s training + {t["seconds"]["bank"]:.0f} s loading +
{t["seconds"]["eval"]:.0f} s evaluation on {_where(t)}, torch {t["torch"]}.
{_stage1(m)}{_measured(t)}
Reproduce: `{m["recipe"]["command"]}` (seeded; the fonts installed decide the font lists,
so install the same ones: Debian `fonts-liberation fonts-freefont-ttf
fonts-urw-base35 fonts-noto-core fonts-open-sans fonts-lato fonts-roboto-unhinted
fonts-cantarell fonts-crosextra-carlito fonts-ebgaramond fonts-comic-neue`)."""
    )
    return f"""# clipaudit visible-watermark detector

{about}
{_real_section(m)}
## Data
Pairs of one random view of a clean image, with and without a mark. Photos: {data["photos"]};
world scenes ({data["world"]}) for {1 - data["photo_share"]:.0%} of the pairs.
Views: {data["views"]}. Marks: {data["overlay"]}.

Fonts (split by family: every weight and slant of a held-out family is held out), logo
shapes and texts are never shared between training and measurement:
- {len(data["fonts"]["train"])} training fonts (matplotlib's and the system's; the list is in
  metrics.json); held-out families: {", ".join(data["held_out_families"])} (those installed);
- train logos: {", ".join(data["logos"]["train"])}; held-out: {", ".join(data["logos"]["heldout"])}
  (ring_letter is the world's logo style);
- texts: training names from syllables in templates such as "© 2011 Name", "name.com",
  "Photo by Name", two-line credits and a few fixed words (PROOF, COPYRIGHT, ...); held out:
  the world's `WATERMARK_TEXTS` (SAMPLE, PREVIEW, © STOCKPIX, ...), other fixed marks
  (DRAFT, CONFIDENTIAL, LumaVault, ...) and names from other syllables in other templates.
  A training text never contains a word of a held-out text.

## Training
{training}

## Synthetic views (held-out marks over held-out world scenes and the installed photos)
| clean images | clean / marked | AUROC | TPR (FPR) @ 1% threshold | TPR (FPR) @ 5% threshold |
|---|---|---|---|---|
{row("world", h["world"])}
{row("installed photos", h["photo"])}
{row("both", h["all"])}

By layout: {rates(h["by_layout"])}; by kind: {rates(h["by_kind"])}; by opacity:
{rates(h["by_opacity"])}; world texts: {rates(h["world_texts"])} (1% / 5% thresholds).
Training-style marks on the same held-out world scenes: {ts["fpr_0.01"]:.3f} / {ts["fpr_0.05"]:.3f}.
The world's own marks (as the demo pool plants them): {wn["fpr_0.01"]:.3f} / {wn["fpr_0.05"]:.3f}.

## Limitations
- **Fires on flat text on a plate.** Opaque text on a solid plate (a sign, a caption bar)
  over clean views is flagged {nt["fpr_0.01"]:.0%} / {nt["fpr_0.05"]:.0%} of the time: a caption
  band *is* one of the trained mark styles, so such images are what a reviewer should see.
- Small and faint marks are the misses (see the layout and opacity rows): the input is
  {m.get("input_size", vd.INPUT_SIZE)} px for the whole frame, so a credit line under ~3% of
  the shorter side is a few pixels tall.
- Real stock-agency marks (their designs, patterned or emboss-filtered overlays) are imitated,
  not present in the data; recall on them is not measured here.
- Thresholds depend on the clean images: recalibrate on a sample of your own data.
"""


def _flag(text: str) -> bool:
    if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
        raise argparse.ArgumentTypeError(f"{text!r} is not true or false")
    return text.lower() in ("true", "1", "yes")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    for f, v in asdict(TrainConfig(out="")).items():
        if f not in ("out", "widths", "depths"):
            kind: Any = _flag if isinstance(v, bool) else type(v)
            ap.add_argument(f"--{f.replace('_', '-')}", type=kind, default=v)
    ap.add_argument("--widths", type=int, nargs=5, default=list(DEFAULT_WIDTHS),
                    help="channels of the five conv stages")  # fmt: skip
    ap.add_argument("--depths", type=int, nargs=5, default=list(DEFAULT_DEPTHS),
                    help="convolutions at each of the five stages")  # fmt: skip
    args = vars(ap.parse_args(argv))
    if min(args["depths"]) < 1:
        ap.error(f"--depths {args['depths']}: give every stage at least one convolution")
    if args["steps"] < 0 or args["workers"] < 0:
        ap.error(f"--steps {args['steps']} --workers {args['workers']}: give counts of 0 or more")
    init = Path(args["init"]) if args["init"] else None
    if args["steps"] == 0 and not (init and all((init / f).is_file() for f in FILES)):
        ap.error("--steps 0 measures trained weights: give --init a detector folder with "
                 f"{', '.join(FILES)}")  # fmt: skip
    if args["steps"] == 0:  # the shape of the weights is the init folder's
        made = json.loads((Path(args["init"]) / CONFIG).read_text(encoding="utf-8"))
        args["widths"] = made["widths"]
        args["depths"] = made.get("depths", list(DEFAULT_DEPTHS))
    if args["steps"] == 0 and not args["evaluate"]:
        ap.error("--steps 0 with --evaluate false would do nothing: drop one of them")
    if args["device"].startswith("cuda") and not torch.cuda.is_available():
        ap.error(f"--device {args['device']}: no CUDA device is visible here; use --device cpu")
    cfg = TrainConfig(**args)
    m = train(cfg)
    if not cfg.evaluate:
        print(json.dumps({"out": cfg.out, "training": m["training"]["seconds"]}))
        return
    r = m.get("real_photos", {})
    short = {k: r[k] for k in ("auroc", "tpr", "fpr") if k in r}
    print(json.dumps({"thresholds": m["thresholds"], "real_photos": short}))


if __name__ == "__main__":
    main()
