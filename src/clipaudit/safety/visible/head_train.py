"""Train the shipped visible-watermark detector: a head over nudenet's frozen first stages
(``visible.backbone``), measured like the CNN of ``visible.train``.

    python -m clipaudit.safety.visible.head_train --photos ../shared/photos --out DIR

1. The backbone: nudenet's 320n.onnx cut after P3 and P4, written to ``DIR/backbone.onnx``
   (needs the ``onnx`` package: the ``bench`` extra).
2. Features: ``--parts`` × 4,000 training pairs (fit photos 85%, world scenes 15%, drawn as
   ``visible.train`` draws them, at 320 px), run through the backbone once and cached as fp16
   under ``--cache``/<backbone sha256>/ (2.5 GB a part; about 140 s a part on two cores).
3. The head: ``--epochs`` passes over the parts, one part in memory at a time (parts in a
   shuffled order, pairs shuffled within), AdamW with a one-cycle schedule, BCE.
4. Measured by ``visible.train.evaluate`` (thresholds at 1% and 5% FPR on the clean tune
   photos, every figure on the held-out photos under held-out marks), the folder written
   with its card.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from clipaudit.safety.visible import backbone as vb
from clipaudit.safety.visible import data as vd
from clipaudit.safety.visible.detector import CONFIG, METRICS, WEIGHTS, sha256_file, torch_threads
from clipaudit.safety.visible.stream import fresh_pair
from clipaudit.safety.visible.train import (
    TrainConfig,
    card,
    data_record,
    evaluate,
    labels_digest,
    labels_record,
    marked_photos,
)

PHOTO_SHARE = 0.85


@dataclass
class HeadConfig:
    out: str
    photos: str = ""  # a folder of real photos; empty: the installed packages' three (tests)
    cache: str = "/tmp/clipaudit-visible-head"
    parts: int = 10
    pairs_per_part: int = 4000
    n_world: int = 200  # world scenes drawn under 15% of the marks
    epochs: int = 5
    width: int = 128
    batch: int = 128
    lr: float = 2e-3  # the one-cycle peak
    weight_decay: float = 1e-4
    seed: int = 0
    threads: int = 2
    eval_pairs: int = 600  # measurement sizes, as visible.train's
    limit_pairs: int = 300
    n_world_heldout: int = 400


def part_seed(k: int) -> str:
    # The name the trial (bench/visible_backbone_trial.py) drew its parts under.
    return f"yolo-train:{k}"


def fit_names(folder: Path) -> list[str]:
    """The fit part of ``folder`` as ``visible.data.load_photos`` picks it, not decoded."""
    from clipaudit.calibrate.photo_split import is_tune, photos

    skip = marked_photos()
    rel = (p.relative_to(folder).as_posix() for p in photos(folder, "calibration"))
    return [r for r in rel if r not in skip and not is_tune(r)]


def build_part(backbone: vb.Backbone, bank: vd.Bank, k: int, n: int) -> dict[str, np.ndarray]:
    """Part ``k``: ``n`` clean inputs, then their marked twins, as backbone features (each
    output of the backbone's graph under its ``vb.KEYS`` name) and labels ``y``."""
    rng = random.Random(part_seed(k))
    with vd.input_size(vb.INPUT_SIZE):
        pairs = [fresh_pair(rng, bank, PHOTO_SHARE, True) for _ in range(n)]
    x = np.stack([p[0] for p in pairs] + [p[1] for p in pairs])
    y = np.r_[np.zeros(len(pairs)), np.ones(len(pairs))].astype(np.float32)
    return {**backbone.named(x), "y": y}


def holds(path: Path, keep: tuple[str, ...]) -> bool:
    with np.load(path) as z:
        return set(keep) <= set(z.files)


def cached_parts(
    cfg: HeadConfig,
    backbone: vb.Backbone,
    cut_sha: str,
    log: bool,
    keep: tuple[str, ...] = ("p3", "p4"),
) -> tuple[list[Path], int]:
    """The parts' feature files, drawn and run through the backbone where missing; and how
    many were drawn here (the rest were read from the cache). A part stores only the
    features in ``keep`` (a stage tuning computes the later ones itself, so they need not
    be stored); a caller that needs one a part lacks draws that part again."""
    # Keyed by what decides the features: the backbone, which photos, the part size (another
    # photo folder under the same cache must not reuse these features).
    src = "installed"
    if cfg.photos:
        names = "\n".join(fit_names(Path(cfg.photos))).encode()
        src = "photos" + hashlib.sha256(names).hexdigest()[:12]
    folder = Path(cfg.cache) / f"{cut_sha[:16]}-{src}-{cfg.pairs_per_part}-w{cfg.n_world}"
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"train{k}.npz" for k in range(cfg.parts)]
    bank: vd.Bank | None = None
    drawn = 0
    for k, path in enumerate(paths):
        if path.is_file() and holds(path, keep):
            continue
        drawn += 1
        if bank is None:
            photos = Path(cfg.photos) if cfg.photos else None
            bank = vd.Bank.build("train", cfg.n_world, photos, "fit", skip=marked_photos())
        t = time.time()
        tmp = path.with_suffix(".tmp.npz")
        part = build_part(backbone, bank, k, cfg.pairs_per_part)
        np.savez(tmp, **{k: part[k] for k in (*keep, "y")})  # type: ignore[arg-type]
        tmp.rename(path)  # a part cut short never looks complete
        if log:
            print(f"part {k}: {time.time() - t:.0f} s", flush=True)
    return paths, drawn


def train_head(cfg: HeadConfig, parts: list[Path], log: bool) -> tuple[vb.Head, list[float]]:
    torch.manual_seed(cfg.seed)
    head = vb.Head(cfg.width)
    with np.load(parts[0]) as z:
        per_part = len(z["y"]) // cfg.batch
    steps = cfg.epochs * len(parts) * per_part
    opt = torch.optim.AdamW(head.parameters(), cfg.lr / 2, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, cfg.lr, total_steps=steps)
    order = np.random.default_rng(cfg.seed)
    losses: list[float] = []
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    head.train()
    for ep in range(cfg.epochs):
        for k in order.permutation(len(parts)).tolist():
            with np.load(parts[k]) as z:
                p3, p4, y = z["p3"], z["p4"], z["y"]
            perm = order.permutation(len(y))
            for i in range(per_part):
                ix = np.sort(perm[i * cfg.batch : (i + 1) * cfg.batch])
                logit = head(torch.from_numpy(p3[ix].astype(np.float32)),
                             torch.from_numpy(p4[ix].astype(np.float32)))  # fmt: skip
                loss = bce(logit, torch.from_numpy(y[ix]))
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
                losses.append(loss.item())
        if log:
            print(f"epoch {ep}: loss {np.mean(losses[-per_part * len(parts) :]):.4f}", flush=True)
    head.eval()
    return head, losses


ABOUT = """A small head ({params:,} parameters, {kib:.0f} KiB fp32 safetensors) over the first
stages of nudenet's detector, {frozen} (`backbone.onnx`: nudenet {nudenet}'s 320n.onnx, MIT,
cut after its stride-8 and stride-16 stages, sha256 `{cut_sha}`), trained by the project on
synthetic marks over real photographs. It scores how likely an image carries a visible
text or logo watermark. Scores are **suspect flags against a threshold, not verdicts**.

Why a borrowed backbone: the CNN trained from nothing on two CPU cores (the previous
detector, `python -m clipaudit.safety.visible.train`) underfits and misses large, plainly
visible words; nudenet's stages were trained on real photographs and already see edges and
strokes. The trade: {ms:.1f} ms an image on {threads} CPU thread(s) against {cnn_ms:.1f} ms for that
CNN, timed in the same run.

## Input
RGB, the whole frame resized (bilinear) to {size}² (aspect squashed, nothing cropped away),
scaled to [0, 1] as nudenet expects. Output: sigmoid probability.
"""

TRAINING = """{pairs:,} pairs ({parts} parts of {per_part:,}) run once through the backbone and
cached (fp16); the head trained {epochs} epochs over them, batch {batch}, AdamW (one-cycle,
peak lr {lr}), BCE. Loss {loss_first:.3f} → {loss_last:.3f}. {feat:.0f} s features
({drawn} of {parts} parts drawn in this run, the rest read from the cache written by the
same code; a part takes about 2 minutes on two cores) + {train:.0f} s training + {eval:.0f} s
evaluation on {threads} torch thread(s) ({machine}), torch {torch}.
Reproduce: `{command}` (seeded; the fonts installed decide the font lists, so install the
same ones: Debian `fonts-liberation fonts-freefont-ttf fonts-urw-base35 fonts-noto-core
fonts-open-sans fonts-lato fonts-roboto-unhinted fonts-cantarell fonts-crosextra-carlito
fonts-ebgaramond fonts-comic-neue`)."""


def ms_per_image(model: vb.BackboneHead, n: int = 64) -> float:
    x = np.random.default_rng(0).integers(0, 255, (n, vb.INPUT_SIZE, vb.INPUT_SIZE, 3), np.uint8)
    model.score(x[:8])
    t = time.perf_counter()
    model.score(x)
    return (time.perf_counter() - t) / n * 1000


def cnn_ms_per_image(n: int = 64) -> float:
    """The previous detector's cost (its architecture at its input size), for the card."""
    from clipaudit.safety.visible.detector import VisibleNet, to_tensor

    net = VisibleNet().eval()
    x = np.random.default_rng(0).integers(0, 255, (n, vd.INPUT_SIZE, vd.INPUT_SIZE, 3), np.uint8)
    with torch.inference_mode():
        net(to_tensor(x[:8]))
        t = time.perf_counter()
        net(to_tensor(x))
    return (time.perf_counter() - t) / n * 1000


def command_for(cfg: HeadConfig) -> str:
    defaults = HeadConfig(out="", photos="")
    args = [f"--{k.replace('_', '-')} {v}" for k, v in asdict(cfg).items()
            if k not in ("out", "photos", "cache") and v != getattr(defaults, k)]  # fmt: skip
    photos = ["--photos PHOTOS"] if cfg.photos else []
    return " ".join(["python -m clipaudit.safety.visible.head_train --out DIR", *photos, *args])


def eval_config(out: str, photos: str, recipe: dict[str, Any]) -> TrainConfig:
    """What ``visible.train.evaluate`` needs from a head recipe (a ``HeadConfig`` as a dict,
    or the one a trained folder's metrics record): training and re-measuring share it."""
    keys = ("seed", "eval_pairs", "limit_pairs", "n_world_heldout", "n_world")
    return TrainConfig(out=out, photos=photos, photo_share=PHOTO_SHARE,
                       **{k: recipe[k] for k in keys})  # fmt: skip


def run(cfg: HeadConfig, log: bool = True) -> dict[str, Any]:
    """Cut, cache, train, measure; writes the detector folder and returns its metrics."""
    from importlib.metadata import version

    from safetensors.torch import save_file

    nudenet = version("nudenet")

    out = Path(cfg.out)
    cut_sha = vb.cut(out / vb.BACKBONE)
    with torch_threads(cfg.threads), torch.random.fork_rng():
        backbone = vb.Backbone(out / vb.BACKBONE, cfg.threads)
        t0 = time.time()
        parts, drawn = cached_parts(cfg, backbone, cut_sha, log)
        t_feat = time.time() - t0
        t1 = time.time()
        head, losses = train_head(cfg, parts, log)
        t_train = time.time() - t1
        model = vb.BackboneHead(backbone, head)
        ecfg = eval_config(cfg.out, cfg.photos, asdict(cfg))
        t2 = time.time()
        with vd.input_size(vb.INPUT_SIZE):
            metrics = evaluate(lambda x: model.score(x), ecfg)
            data = data_record(len(fit_names(Path(cfg.photos))) if cfg.photos else 0, ecfg)
        t_eval = time.time() - t2
        ms, cnn_ms = ms_per_image(model), cnn_ms_per_image()
    save_file(vb.state(head), str(out / WEIGHTS))
    config = {
        "arch": "BackboneHead",
        "width": cfg.width,
        "input_size": vb.INPUT_SIZE,
        "backbone": vb.BACKBONE,
        "backbone_sha256": cut_sha,
        "backbone_from": f"nudenet {nudenet} 320n.onnx, outputs {vb.OUTPUTS}",
        "preprocess": "RGB, the whole frame resized (bilinear) to input_size², x/255",
    }
    (out / CONFIG).write_text(json.dumps(config, indent=2) + "\n")
    w = max(1, min(50, len(losses) // 4))  # the first and last steps' mean loss
    metrics["training"] = {
        "pairs": len(parts) * cfg.pairs_per_part,
        "loss_first": round(float(np.mean(losses[:w])), 4),
        "loss_last": round(float(np.mean(losses[-w:])), 4),
        "losses_every_100": [round(v, 4) for v in losses[::100]],
        "params": sum(p.numel() for p in head.parameters()),
        "weights_bytes": (out / WEIGHTS).stat().st_size,
        "weights_sha256": sha256_file(out / WEIGHTS),
        "backbone_sha256": cut_sha,
        "ms_per_image": round(ms, 2),
        "cnn_ms_per_image": round(cnn_ms, 2),
        "seconds": {
            "features": round(t_feat, 1),
            "train": round(t_train, 1),
            "eval": round(t_eval, 1),
        },
        "parts_drawn_here": drawn,
        "threads": cfg.threads,
        "machine": platform.machine(),
        "torch": torch.__version__,
    }
    metrics["recipe"] = {"config": {k: v for k, v in asdict(cfg).items()
                                    if k not in ("out", "photos", "cache")},
                         "command": command_for(cfg)}  # fmt: skip
    metrics["data"] = data
    metrics["labels"] = labels_record()
    (out / METRICS).write_text(json.dumps(metrics, indent=2) + "\n")
    (out / "CARD.md").write_text(render_card(metrics, config))
    return metrics


def remeasure(folder: Path, photos: Path, threads: int = 2, log: bool = True) -> dict[str, Any]:
    """Measure a trained folder again, without training: for when ``photos_with_marks.json``
    gains labels (the clean tune and held-out photos change, so do the thresholds and every
    real-photo figure). The training record is kept as it was, and the metrics say how many
    labels the training and the measurement each saw."""
    from clipaudit.safety.visible.detector import load_from

    old = json.loads((folder / METRICS).read_text())
    config = json.loads((folder / CONFIG).read_text())
    rc = old["recipe"]["config"]
    det = load_from(folder)
    ecfg = eval_config(str(folder), str(photos), rc)
    t = time.time()
    with torch_threads(threads), vd.input_size(det.input_size):
        metrics = evaluate(lambda x: det.score_arrays(x), ecfg)
    trained_with = old.get("labels", {}).get(
        "trained_with", old["data"]["photos_with_marks_skipped"]
    )
    labels = marked_photos()
    metrics["labels"] = {"trained_with": trained_with, "measured_with": len(labels),
                         "trained_digest": old.get("labels", {}).get("trained_digest"),
                         "measured_digest": labels_digest(labels),
                         "remeasured_seconds": round(time.time() - t, 1)}  # fmt: skip
    for k in ("training", "recipe", "data"):
        metrics[k] = old[k]
    (folder / METRICS).write_text(json.dumps(metrics, indent=2) + "\n")
    (folder / "CARD.md").write_text(render_card(metrics, config))
    if log:
        print(f"measured again in {metrics['labels']['remeasured_seconds']:.0f} s", flush=True)
    return metrics


def relabelled(lab: dict[str, Any]) -> bool:
    """Whether a folder was measured with other labels than it was trained with (by count,
    and by digest where the training recorded one)."""
    if lab["measured_with"] != lab["trained_with"]:
        return True
    trained = lab.get("trained_digest")
    return trained is not None and trained != lab.get("measured_digest")


def tuned_stages(stage: dict[str, Any]) -> str:
    """Which of the backbone's stages a stage tuning trained, as the card names them."""
    return "stride-8 and stride-16 stages" if stage.get("stride") == 8 else "stride-16 stage"


def stage_origin(stage: dict[str, Any]) -> str:
    """Where a stage tuning started: nudenet's weights, or an earlier tuning it went on from."""
    prev = stage["from"].get("stage")
    if not prev:
        return "from nudenet's weights"
    # Only a stride-8 tuning after a stride-16 one starts a stage (model.3/4) from nudenet.
    rest = stage.get("stride") == 8 and prev.get("stride") != 8
    return (f"going on from an earlier tuning of {prev.get('layers', 'model.5 and model.6')}"
            f" ({prev['steps']:,} steps, `{prev['command']}`)"
            + ("; the rest from nudenet's weights" if rest else ""))  # fmt: skip


def loss_phrase(st: dict[str, Any]) -> str:
    """How a stage tuning's loss differed from plain BCE, for the card ('' where it did not)."""
    loss = st.get("loss") or {}
    bits = []
    if "hard_negatives" in loss:
        h = loss["hard_negatives"]
        bits.append(f"{h['share_of_batch']:.0%} of each batch from the {h['top_of_part']:.0%}"
                    " of a part's clean inputs it scored highest")  # fmt: skip
    if "tail" in loss:
        t = loss["tail"]
        bits.append(f"BCE plus {t['weight']} × a pairwise loss between each mark and the"
                    f" batch's {t['top_clean_per_batch']} highest clean inputs")  # fmt: skip
    return ("; " + "; ".join(bits)) if bits else ""


def render_card(metrics: dict[str, Any], config: dict[str, Any]) -> str:
    """CARD.md from a trained folder's metrics and config."""
    t, rc = metrics["training"], metrics["recipe"]["config"]
    about = ABOUT.format(params=t["params"], kib=t["weights_bytes"] / 1024,
                         nudenet=config["backbone_from"].split()[1],
                         cut_sha=config["backbone_sha256"], ms=t["ms_per_image"],
                         frozen=f"its {tuned_stages(t['stage'])} fine-tuned"
                         if t.get("stage") else "frozen",
                         cnn_ms=t["cnn_ms_per_image"], threads=t["threads"],
                         size=config["input_size"])  # fmt: skip
    sec = t["seconds"]
    training = TRAINING.format(
        pairs=t["pairs"], parts=rc["parts"], per_part=rc["pairs_per_part"], epochs=rc["epochs"],
        batch=rc["batch"], lr=rc["lr"], loss_first=t["loss_first"], loss_last=t["loss_last"],
        feat=sec["features"], drawn=t["parts_drawn_here"], train=sec["train"], eval=sec["eval"],
        threads=t["threads"], machine=t["machine"], torch=t["torch"],
        command=metrics["recipe"]["command"],
    )  # fmt: skip
    st = t.get("stage")
    if st:
        training += (
            f"\n\nThen the {tuned_stages(st)} ({st.get('layers', 'model.5 and model.6')},"
            f" {st['params']:,} parameters, {stage_origin(st)}) and the head (from the"
            f" {'earlier tuning' if st['from'].get('stage') else 'weights above'}, sha256"
            f" `{st['from']['weights_sha256'][:16]}`) trained together on"
            f" the cached stride-{4 if st.get('stride') == 8 else 8} features"
            f" ({st.get('inputs_cached', 2 * rc['parts'] * rc['pairs_per_part']):,} inputs):"
            f" {st['steps']:,} steps of {st['batch']} ({st['inputs_seen']:,} inputs),"
            f" AdamW, peak lr {st['lr']}, cosine{loss_phrase(st)}; loss {st['loss_first']:.3f} →"
            f" {st['loss_last']:.3f}; {st['seconds']['train']:.0f} s on {st['threads']} thread(s)"
            f" ({st['machine']}, torch {st['torch']}). The tuned weights replace the stage's in"
            f" `backbone.onnx` (its graph computes the trained stage to within"
            f" {st['export_max_abs_diff']:.1e}). Reproduce: `{st['command']}`."
        )
    lab = metrics.get("labels")
    if lab and relabelled(lab):
        same = lab["measured_with"] == lab["trained_with"]
        training += (
            f"\n\nTrained while {lab['trained_with']} photos were labelled as already marked;"
            f" measured again (`--remeasure`, no retraining) with {lab['measured_with']}"
            + (" (the same count, other photos)" if same else "")
            + ": the thresholds and every real-photo figure above are from that measurement."
        )
    head_with = (lab or {}).get("head_trained_with")
    if lab and head_with is not None and head_with != lab["trained_with"]:
        training += (
            f"\n\nThe head was first trained while {head_with} photos were labelled as already"
            f" marked; the stage tuning above, with {lab['trained_with']}. Training photos"
            " labelled later were clean to the head; the figures above are measured with"
            f" today's {lab['measured_with']}."
        )
    # The card's limits name the input size: this kind's (320), not the CNN's default.
    return card({**metrics, "input_size": config["input_size"]}, about, training)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for f, v in asdict(HeadConfig(out="", photos="")).items():
        ap.add_argument(f"--{f.replace('_', '-')}", type=type(v), default=v,
                        required=f == "out")  # fmt: skip
    ap.add_argument(
        "--remeasure", action="store_true", help="measure the trained --out again (new labels)"
    )
    args = ap.parse_args(argv)
    if args.photos and not Path(args.photos).is_dir():
        ap.error(f"--photos {args.photos} is not a folder; give the shared photos folder")
    remeasure_only = args.remeasure
    del args.remeasure
    if remeasure_only:
        if not args.photos:
            ap.error("--remeasure needs --photos: give the shared photos folder")
        if not (Path(args.out) / METRICS).is_file():
            ap.error(f"--remeasure needs a trained folder; {args.out} has no {METRICS}")
        m = remeasure(Path(args.out), Path(args.photos), args.threads)
    else:
        for k in ("parts", "pairs_per_part", "epochs", "width", "batch", "threads"):
            if getattr(args, k) < 1:
                ap.error(f"--{k} {getattr(args, k)}: give 1 or more")
        m = run(HeadConfig(**vars(args)))
    r = m.get("real_photos", {})
    short = {k: r[k] for k in ("auroc", "tpr", "fpr") if k in r}
    print(json.dumps({"thresholds": m["thresholds"], "real_photos": short}))


if __name__ == "__main__":
    main()
