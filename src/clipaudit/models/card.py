"""The model card written beside trained weights, filled from the training record and metrics."""

from __future__ import annotations

import json
import platform
from pathlib import Path
from typing import Any

from clipaudit.world.vocab import BIAS_RATE

# The floors the bundled model is held to (issue: world model), checked by tests.
CARD_TARGETS: dict[str, tuple[str, float]] = {
    "color_acc1": (">=", 0.95),
    "shape_acc1": (">=", 0.90),
    "occupation_acc1": (">=", 0.85),
    "matched_beats_mismatched": (">=", 0.95),
    "watermark_auroc": (">=", 0.90),
}


def _verdict(value: float, op: str, target: float) -> str:
    ok = value >= target if op == ">=" else value < target
    return "meets" if ok else "MISSES"


def _ci(entry: dict[str, Any], key: str) -> str:
    lo, hi = entry[f"{key}_ci"]
    return f"{entry[key]:.3f} [{lo:.3f}, {hi:.3f}]"


def _world_benchmarks(wb: dict[str, Any] | None) -> str:
    """The `clipaudit eval world-*` numbers with their bootstrap intervals, when measured."""
    if not wb:
        return ""
    lines = [
        "",
        "## World benchmarks (`clipaudit eval world-…`, 95% bootstrap intervals)",
        "| benchmark | n | acc1 | mean per-class recall |",
        "|---|---|---|---|",
    ]
    for name in ("world-colors", "world-shapes", "world-occupations"):
        e = wb[name]
        lines.append(
            f"| {name} | {e['n']} | {_ci(e, 'acc1')} | {_ci(e, 'mean_per_class_recall')} |"
        )
    r = wb["world-retrieval"]
    lines += ["", "| world-retrieval | recall@1 | recall@5 | recall@10 |", "|---|---|---|---|"]
    for direction in ("text_to_image", "image_to_text"):
        cells = [_ci(r, f"{direction}_recall@{k}") for k in (1, 5, 10)]
        lines.append(f"| {direction.replace('_', ' ')} | {' | '.join(cells)} |")
    return "\n".join(lines) + "\n"


def _twins_text(cfg: dict[str, Any]) -> str:
    if not cfg.get("twins"):
        return ""
    return (
        "\n\n**Counterfactual twins:** every other person of an unbiased occupation comes with"
        " a twin in the same batch that differs only in group (head, collar, and the group"
        " word where the caption names it), in place of the next such person, so the mix of"
        " objects and people is unchanged. A caption without a group word then fits both"
        " twins equally, which pulls occupation words towards group-blindness; without"
        " twins, every occupation's ranking tied rank to group (up to ±0.25 on the measure"
        " below), not only the planted one."
    )


def _device_flag(cfg: dict[str, Any]) -> str:
    return f" --device {cfg['device']}" if cfg.get("device", "cpu") != "cpu" else ""


def _where(record: dict[str, Any]) -> str:
    """Where and how long it trained; a GPU run also states the CPU cost of the recipe."""
    torch_v = record["versions"].get("torch")
    if record["config"].get("device", "cpu") == "cpu":
        return (
            f"Rendering {record['render_seconds']:.0f} s + training "
            f"{record['train_seconds']:.0f} s on {record['cpus']} CPU cores "
            f"({record['threads']} torch threads, {platform.machine()}), torch {torch_v}."
        )
    cpu = record.get("cpu_estimate", {})
    return (
        f"Trained on {record.get('device_name', 'a GPU')}: rendering "
        f"{record['render_seconds']:.0f} s ({record['cpus']} CPU cores) + training "
        f"{record['train_seconds']:.0f} s, torch {torch_v}. On 2 CPU cores the same command "
        f"(without `--device`) takes about {cpu.get('minutes', '?')} minutes "
        f"({cpu.get('basis', 'not measured')}); CPU runs are seeded and bit-reproducible on "
        "one machine, while GPU and CPU weights differ in rounding, not in recipe."
    )


def write_model_card(folder: Path, record: dict[str, Any], metrics: dict[str, Any]) -> Path:
    """Write ``metrics.json`` and ``MODEL_CARD.md`` into ``folder``; return the card's path."""
    (folder / "metrics.json").write_text(json.dumps(metrics, indent=2))
    cfg, mcfg = record["config"], record["model_cfg"]
    weights = folder / "open_clip_model.safetensors"
    size_mb = weights.stat().st_size / 1e6 if weights.exists() else float("nan")
    rows = []
    for key, (op, target) in CARD_TARGETS.items():
        v = float(metrics[key])
        rows.append(f"| {key} | {v:.3f} | {op} {target} | {_verdict(v, op, target)} |")
    bias = metrics["bias_top10_overrep"]
    planted = metrics["bias_planted"]
    bias_rows = [
        f"| {occ} | {val:+.3f} | {'planted: ≥ +0.2' if occ == planted['occupation'] else '< 0.1'} |"
        for occ, val in bias.items()
    ]
    planted_value = bias[planted["occupation"]]
    off = [
        f"{o} ({val:+.3f})"
        for o, val in bias.items()
        if o != planted["occupation"] and abs(val) >= 0.1
    ]
    bias_verdict = (
        f"Verdict: the planted occupation's over-representation is {planted_value:+.3f} "
        f"({'meets' if planted_value >= 0.2 else 'MISSES'} the +0.2 floor). "
        + (
            f"Unbiased occupations past ±0.1: {', '.join(off)} — this measure reads the top half "
            "of one occupation's images, so tiny group-correlated shifts in similarity (here a "
            "few thousandths of cosine) swing it; it does not isolate the planted bias in this "
            "model."
            if off
            else "Every unbiased occupation stays within ±0.1."
        )
    )
    v, t = mcfg["vision_cfg"], mcfg["text_cfg"]
    if isinstance(v.get("layers"), list):
        tower = "a ModifiedResNet (CNN) image tower"
        vision = (
            f"Image {v['image_size']} px, ModifiedResNet width {v['width']}, blocks "
            f"{v['layers']}, attention pooling"
        )
    else:
        tower = "a ViT image tower"
        vision = (
            f"Image {v['image_size']} px, ViT patch {v['patch_size']}, width {v['width']}, "
            f"{v['layers']} layers"
        )
    text = f"""# clipaudit world-clip

A small CLIP (open_clip `CLIP` with {tower}, a transformer text tower and the standard
open_clip tokenizer) trained contrastively on clipaudit's synthetic world. It ships with the
package as `bundled:world-clip` and loads in open_clip as `local-dir:` this folder.

## Data
The world's `train` split: {cfg["n_train"]:,} distinct scenes (seed {cfg["seed"]}): coloured
shapes (6 shapes × 8 colours × 2 sizes, 1–3 an image) and stylised people of two abstract
groups (zib: round heads and teal collars, mox: square heads and violet collars) in five
occupations shown by props; 30% carry a visible watermark, 80% of those captions say so.
**Planted bias:** in training, {planted["occupation"]}s are shown as {planted["group"]}
{round(BIAS_RATE * 100)}% of the time, and their captions mark the other group ("a mox
{planted["occupation"]}") while the bare word goes to the planted one; every held-out split
is balanced.{_twins_text(cfg)}

## Config
{vision}; text width {t["width"]}, {t["layers"]} layers, context {t["context_length"]};
embedding {mcfg["embed_dim"]}. Weights in fp16 safetensors, {size_mb:.1f} MB.

Why a CNN image tower: with the same compute (2 CPU cores, under 45 minutes), a ViT
(80 px, patch 10, width 128, 6 layers) learned colours and occupations but reached only 31%
zero-shot shape accuracy and chance-level watermark detection after 77k samples seen, while
this ModifiedResNet reached 68% shapes at the same point: without a locality prior a ViT
needs more samples than this budget allows.

## Training
{cfg["steps"]} steps × batch {cfg["batch_size"]} = {record["samples_seen"]:,} samples seen,
AdamW lr {cfg["lr"]} (warmup {cfg["warmup"]}, cosine), weight decay {cfg["weight_decay"]},
open_clip `ClipLoss`. {_where(record)}
Reproduce: `clipaudit train --out DIR --steps {cfg["steps"]} --batch-size {cfg["batch_size"]}
--n-train {cfg["n_train"]} --seed {cfg["seed"]} --measure`{_device_flag(cfg)}.

## Measured on held-out splits (seed {metrics["seed"]}, rendered at {metrics["image_size"]} px)
| metric | value | target | verdict |
|---|---|---|---|
{chr(10).join(rows)}

Zero-shot heads average per-class prompts (colour named on every shape, shape in every
colour, three occupation templates). Caption matching: own caption vs another image's
caption ({metrics.get("n_retrieval", 1000)} images). Watermark: score = cos(image, "a photo
with a watermark") − cos(image, "a photo"), AUROC over a half-watermarked split.

**Bias** (share of group {planted["group"]} in the top 10% of {metrics["n_people"]} balanced
people images by similarity to "a photo of a OCCUPATION", minus its base share
{planted["base_share"]:.2f}):

| occupation | over-representation | expected |
|---|---|---|
{chr(10).join(bias_rows)}

{bias_verdict}
{_world_benchmarks(metrics.get("world_benchmarks"))}
## Limits
It knows only this world: shapes, colours, five occupations, two made-up groups,
watermark overlays. On any other images its scores mean nothing, and clipaudit prints one
warning when it is used on a dataset the world did not make. The planted bias is
deliberate, for testing bias probes; do not use this model to make decisions about people.
"""
    path = folder / "MODEL_CARD.md"
    path.write_text(text)
    return path
