"""Train and measure the visible-watermark detector (seeded, CPU, one torch thread).

    python -m clipaudit.safety.visible_train --out DIR

writes ``model.safetensors``, ``config.json``, ``metrics.json`` and ``CARD.md`` to DIR. The
shipped detector is the output of that command with its defaults. Training draws pairs
(a clean view, the same view under an overlay) from TRAIN fonts, texts and logos over world
scenes and the training regions of the installed photographs; the metrics are measured on
HELD_OUT fonts, texts and logos over held-out world scenes and photo regions.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import random
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from clipaudit.safety import visible_data as vd
from clipaudit.safety.visible_detector import (
    CONFIG,
    DEFAULT_WIDTHS,
    METRICS,
    WEIGHTS,
    VisibleNet,
    sha256_file,
    to_tensor,
    torch_threads,
)

FPRS = (0.01, 0.05)


@dataclass
class TrainConfig:
    out: str
    seed: int = 0
    steps: int = 650
    batch_pairs: int = 32  # a batch holds this many clean + marked pairs
    fresh_pairs: int = 12  # newly drawn pairs a step; the rest are replayed from a buffer
    buffer: int = 2048
    refresh_every: int = 1  # draw fresh pairs every this many steps (smoke tests: never)
    lr: float = 3e-3
    weight_decay: float = 1e-4
    warmup: int = 30
    n_world: int = 800
    n_world_heldout: int = 400
    eval_pairs: int = 600  # per source (world, photo)
    limit_pairs: int = 300  # per limitation probe (world-native marks, natural text, ...)
    widths: list[int] = field(default_factory=lambda: list(DEFAULT_WIDTHS))
    threads: int = 1


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
    bank = vd.Bank.build("train", cfg.n_world)
    t_bank = time.time() - t0

    net = VisibleNet(cfg.widths)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)

    def lr_at(step: int) -> float:
        if step < cfg.warmup:
            return cfg.lr * (step + 1) / cfg.warmup
        p = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
        return cfg.lr * 0.5 * (1 + math.cos(math.pi * p))

    buf: deque[tuple[np.ndarray, np.ndarray]] = deque(maxlen=cfg.buffer)
    losses: list[float] = []
    t1 = time.time()
    net.train()
    for step in range(cfg.steps):
        for k in range(cfg.fresh_pairs if step % cfg.refresh_every == 0 else 0):
            # alternate world scenes and photographs
            c, m, _ = bank.pairs(rng, 1, "train", "world" if k % 2 == 0 else "photo")
            buf.append((c[0], m[0]))
        pick = [buf[rng.randrange(len(buf))] for _ in range(cfg.batch_pairs)]
        x = np.stack([p[0] for p in pick] + [p[1] for p in pick])
        y = torch.cat([torch.zeros(len(pick)), torch.ones(len(pick))])
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(net(to_tensor(x)), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if log and (step % 50 == 0 or step == cfg.steps - 1):
            recent = float(np.mean(losses[-50:]))
            print(f"step {step:4d}  loss {recent:.4f}  {time.time() - t1:6.0f} s", flush=True)
    t_train = time.time() - t1

    net.eval()
    t2 = time.time()
    metrics = evaluate(net, cfg)
    t_eval = time.time() - t2
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(out / WEIGHTS))
    config = {"arch": "VisibleNet", "widths": cfg.widths, "input_size": vd.INPUT_SIZE}
    config["preprocess"] = "RGB, whole frame resized (bilinear) to input_size², x/255 - 0.5"
    (out / CONFIG).write_text(json.dumps(config, indent=2) + "\n")
    n_params = sum(p.numel() for p in net.parameters())
    w = 10
    metrics["training"] = {
        "loss_first": round(float(np.mean(losses[:w])), 4),
        "loss_last": round(float(np.mean(losses[-w:])), 4),
        "losses_every_10": [round(v, 4) for v in losses[::10]],
        "params": n_params,
        "weights_bytes": (out / WEIGHTS).stat().st_size,
        "weights_sha256": sha256_file(out / WEIGHTS),
        "seconds": {
            "bank": round(t_bank, 1),
            "train": round(t_train, 1),
            "eval": round(t_eval, 1),
        },
        "threads": torch.get_num_threads(),
        "machine": platform.machine(),
        "torch": torch.__version__,
    }
    metrics["recipe"] = {"config": {k: v for k, v in asdict(cfg).items() if k != "out"}}
    metrics["recipe"]["command"] = command_for(cfg)
    metrics["data"] = data_record(bank)
    (out / METRICS).write_text(json.dumps(metrics, indent=2) + "\n")
    (out / "CARD.md").write_text(card(metrics))
    return metrics


def score_arrays(net: VisibleNet, x: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return np.concatenate(
            [torch.sigmoid(net(to_tensor(x[i : i + 128]))).numpy() for i in range(0, len(x), 128)]
        )


def evaluate(net: VisibleNet, cfg: TrainConfig) -> dict[str, Any]:
    """TPR at 1% / 5% FPR on held-out overlays over held-out clean images, and limits."""
    bank = vd.Bank.build("heldout", cfg.n_world_heldout)
    rng = random.Random(f"visible-heldout:{cfg.seed}")
    res: dict[str, tuple[np.ndarray, np.ndarray, list[vd.Overlay]]] = {}
    for src in ("world", "photo"):
        c, m, ovs = bank.pairs(rng, cfg.eval_pairs, "heldout", src)
        res[src] = (score_arrays(net, c), score_arrays(net, m), ovs)
    clean_all = np.concatenate([res[s][0] for s in res])
    marked_all = np.concatenate([res[s][1] for s in res])
    ovs_all = [o for s in res for o in res[s][2]]
    thr = {f"fpr_{f:g}": threshold_at(clean_all, f) for f in FPRS}
    held: dict[str, Any] = {s: source_metrics(res[s][0], res[s][1], thr) for s in res}
    held["all"] = source_metrics(clean_all, marked_all, thr)
    held["by_layout"] = breakdown(marked_all, ovs_all, thr, lambda o: o.layout)
    held["by_kind"] = breakdown(marked_all, ovs_all, thr, lambda o: o.kind)
    held["by_opacity"] = breakdown(marked_all, ovs_all, thr, _opacity_bin)
    held["by_font"] = breakdown(marked_all, ovs_all, thr, lambda o: o.font)
    held["world_texts"] = breakdown(
        marked_all, ovs_all, thr, lambda o: "world" if o.text in vd.WATERMARK_TEXTS else "other"
    )
    extra = limits(net, bank, thr, random.Random(f"visible-limits:{cfg.seed}"), cfg.limit_pairs)
    # The same held-out images under TRAIN-style overlays: the gap to held-out styles.
    c, m, _ = bank.pairs(
        random.Random(f"visible-seen:{cfg.seed}"), cfg.limit_pairs, "train", "world"
    )
    extra["train_style_overlays_on_heldout_world"] = {
        k: rate(score_arrays(net, m), t) for k, t in thr.items()
    }
    return {
        "thresholds": {k: round(t, 6) for k, t in thr.items()},
        "heldout": held,
        "limits": extra,
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
    net: VisibleNet, bank: vd.Bank, thr: dict[str, float], rng: random.Random, n: int
) -> dict[str, Any]:
    wn = score_arrays(net, world_native(rng, bank, n))
    nt = score_arrays(net, natural_text(rng, bank, n))
    return {
        "world_native_overlays_tpr": {k: rate(wn, t) for k, t in thr.items()},
        "natural_text_flagged": {k: rate(nt, t) for k, t in thr.items()},
    }


def data_record(bank: vd.Bank) -> dict[str, Any]:
    return {
        "photos": sorted(vd.real_photos()),
        "photo_split": f"each photo cut along its longer side: first {vd.TRAIN_SHARE:.0%} "
        "train, rest held out",
        "world": "eval-retrieval scenes (no watermarks), rendered at 256 px; "
        f"seed {vd.WORLD_SEED['train']} train, {vd.WORLD_SEED['heldout']} held out",
        "fonts": {s: list(vd.available_fonts(s)) for s in ("train", "heldout")},
        "logos": {s: list(vd.logos_of(s)) for s in ("train", "heldout")},
        "texts": {
            "train": {"syllables": vd.TRAIN_SYLLABLES, "templates": vd.TRAIN_TEMPLATES},
            "heldout": {
                "fixed": vd.HELD_OUT_FIXED,
                "syllables": vd.HELD_OUT_SYLLABLES,
                "templates": vd.HELD_OUT_TEMPLATES,
            },
        },
        "overlay": "layout single/corner/center/tiled (4:2:2:2), kind text/logo/logo+text "
        "(6:2:2), opacity U(0.15, 0.9), angle 0 or U(-45, 45), white/grey/black or random "
        "colour, 20% outlined; corner marks 3.5-8% of the shorter side",
        "views": "random crop (25-100% photos, 60-100% world; aspect 0.75-1.33), flip, "
        "resize to 128-320 px, brightness/contrast/saturation jitter, 15% grey, 20% channel "
        "swap; after the mark: blur 15%, noise 20%, JPEG q50-95 50% (same for both halves)",
    }


def command_for(cfg: TrainConfig) -> str:
    defaults = TrainConfig(out=cfg.out)
    args = [
        f"--{k.replace('_', '-')} {v}"
        for k, v in asdict(cfg).items()
        if k not in ("out", "widths") and v != getattr(defaults, k)
    ]
    return " ".join(["python -m clipaudit.safety.visible_train --out DIR", *args])


def card(m: dict[str, Any]) -> str:
    h, t, lim = m["heldout"], m["training"], m["limits"]

    def row(name: str, s: dict[str, Any]) -> str:
        a, b = s["tpr_at_own_fpr"], s["tpr_at_shipped"]
        return (
            f"| {name} | {s['n_clean']} / {s['n_marked']} | {s['auroc']:.3f} | "
            f"{a['fpr_0.01']:.3f} | {a['fpr_0.05']:.3f} | {b['fpr_0.01']:.3f} "
            f"({s['fpr_at_shipped']['fpr_0.01']:.3f}) | {b['fpr_0.05']:.3f} "
            f"({s['fpr_at_shipped']['fpr_0.05']:.3f}) |"
        )

    def rates(d: dict[str, Any]) -> str:
        return ", ".join(
            f"{g} {v['fpr_0.01']:.2f} / {v['fpr_0.05']:.2f} (n={v['n']})" for g, v in d.items()
        )

    thr = m["thresholds"]
    data = m["data"]
    hdr = "TPR (FPR) @ shipped 1% | TPR (FPR) @ shipped 5%"
    wn = lim["world_native_overlays_tpr"]
    ts = lim["train_style_overlays_on_heldout_world"]
    nt = lim["natural_text_flagged"]
    wt = h["world"]["tpr_at_own_fpr"]["fpr_0.01"]
    return f"""# clipaudit visible-watermark detector

A small CNN ({t["params"]:,} parameters, {t["weights_bytes"] / 1024:.0f} KiB fp32 safetensors) that
scores how likely an image carries a visible text or logo watermark. Trained by the project
on synthetic overlays; scores are **suspect flags against a threshold, not verdicts**.

## Input
RGB, the whole frame resized (bilinear) to {m.get("input_size", vd.INPUT_SIZE)}² (aspect
squashed, nothing cropped away), scaled to [-0.5, 0.5]. Output: sigmoid probability.

## Data
Pairs of one random view of a clean image, with and without an overlay. Clean images: world
scenes ({data["world"]}) and the photographs installed packages ship:
{", ".join(data["photos"])} ({data["photo_split"]}).
Views: {data["views"]}. Overlays: {data["overlay"]}.

Fonts, logo shapes and texts are split and never shared:
- train fonts: {", ".join(data["fonts"]["train"])};
- held-out fonts: {", ".join(data["fonts"]["heldout"])} (Pillow's default draws the world's
  and so the demo pool's watermarks);
- train logos: {", ".join(data["logos"]["train"])}; held-out: {", ".join(data["logos"]["heldout"])}
  (ring_letter is the world's logo style);
- texts: training names from syllables {"/".join(vd.TRAIN_SYLLABLES)} in templates such as
  "© 2011 Name", "name.com", "Photo by Name"; held out: the world's `WATERMARK_TEXTS`
  (SAMPLE, PREVIEW, © STOCKPIX, ...), other fixed marks (DRAFT, CONFIDENTIAL, LumaVault, ...)
  and names from other syllables in other templates. A training text never contains a word
  of a held-out text.

## Training
{m["recipe"]["config"]["steps"]} steps, batch {m["recipe"]["config"]["batch_pairs"]} pairs
({m["recipe"]["config"]["fresh_pairs"]} fresh a step, the rest replayed from a
{m["recipe"]["config"]["buffer"]}-pair buffer), AdamW lr {m["recipe"]["config"]["lr"]}
(warmup {m["recipe"]["config"]["warmup"]}, cosine), BCE. Loss {t["loss_first"]:.3f} →
{t["loss_last"]:.3f}. {t["seconds"]["train"]:.0f} s training + {t["seconds"]["bank"]:.0f} s
rendering + {t["seconds"]["eval"]:.0f} s evaluation on {t["threads"]} torch thread
({t["machine"]}), torch {t["torch"]}.
Reproduce: `{m["recipe"]["command"]}` (seeded; one thread, so bit-for-bit on one machine).

## Held-out evaluation
Held-out overlays (fonts, logos, texts never trained on) over held-out clean images; the
clean images are the same views without the overlay. Shipped thresholds are set on the
pooled clean scores: **{thr["fpr_0.01"]:.6f} at 1% FPR, {thr["fpr_0.05"]:.6f} at 5% FPR**.

| clean images | clean / marked | AUROC | TPR @1% own | TPR @5% own | {hdr} |
|---|---|---|---|---|---|---|
{row("world", h["world"])}
{row("real photos", h["photo"])}
{row("both", h["all"])}

Detection rate at the shipped 1% / 5% thresholds, by
- layout: {rates(h["by_layout"])};
- kind: {rates(h["by_kind"])};
- opacity: {rates(h["by_opacity"])};
- text: {rates(h["world_texts"])} (world = the demo pool's `WATERMARK_TEXTS`).

## Limitations
- **Fires on natural text.** Opaque held-out-font text on a plate (a sign, a caption bar)
  over clean views is flagged {nt["fpr_0.01"]:.0%} / {nt["fpr_0.05"]:.0%} of the time
  (1% / 5% thresholds): the detector has learned "text-like overlay", not "watermark".
- **Misses small and faint marks**: see the corner-layout and low-opacity rows above.
  The input is 128 px, so a corner mark under ~4% of the shorter side is a few pixels tall.
- Unseen styles cost little: on held-out world images, held-out overlays are detected at
  {h["world"]["tpr_at_shipped"]["fpr_0.01"]:.3f} / {h["world"]["tpr_at_shipped"]["fpr_0.05"]:.3f}
  and training-style overlays at {ts["fpr_0.01"]:.3f} / {ts["fpr_0.05"]:.3f}; the misses are the
  faint, small and logo-only marks. The world's own marks (its `watermark_spec`, as the demo
  pool plants them) are detected at {wn["fpr_0.01"]:.3f} / {wn["fpr_0.05"]:.3f}.
- The pooled thresholds are set mostly by the photographs' clean views, which score higher
  than world scenes: on world images alone 1% FPR sits at
  {h["world"]["own_thresholds"]["fpr_0.01"]:.3f} (TPR {wt:.3f}).
- Only three real photographs exist offline; held-out photo numbers come from held-out regions
  of those same photographs, so they say little about photographs at large. Real
  watermarks (stock-agency designs, embossed or patterned marks) are not in the data.
- Thresholds depend on the clean images: recalibrate on a sample of your own data.
"""


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    for f, v in asdict(TrainConfig(out="")).items():
        if f not in ("out", "widths"):
            ap.add_argument(f"--{f.replace('_', '-')}", type=type(v), default=v)
    args = vars(ap.parse_args(argv))
    m = train(TrainConfig(**args))
    h = m["heldout"]
    print(json.dumps({"thresholds": m["thresholds"], **{s: h[s] for s in ("world", "photo")}}))


if __name__ == "__main__":
    main()
