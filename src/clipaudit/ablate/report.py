"""The ablation's markdown section: what each arm kept, what it cost, what it scored."""

from __future__ import annotations

from typing import Any

from clipaudit.ablate.benchmarks import HEADLINE
from clipaudit.ablate.config import RAW_ARM


def _cell(text: str) -> str:
    """A table cell: pipes and line breaks from pack names or paths must not break the row."""
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def _ci(ci: list[float] | None, scale: float = 100.0) -> str:
    return "–" if ci is None else f"[{ci[0] * scale:.1f}, {ci[1] * scale:.1f}]"


def _score(s: dict[str, Any]) -> str:
    return f"{s['value'] * 100:.1f} {_ci(s['ci'])}"


def _diff(d: dict[str, Any]) -> str:
    mark = (
        " **✓**" if d["excludes_zero"] and d["value"] > 0 else (" ✗" if d["excludes_zero"] else "")
    )
    return f"{d['value'] * 100:+.1f} {_ci(d['ci'])}{mark}"


def ablate_markdown(res: dict[str, Any]) -> str:
    c = res["config"]
    comp = res["compute"]
    arms = res["arms"]
    lines = [
        "## Ablation: does curation help the model?",
        "",
        f"Pool `{_cell(str(res['pool']['source']))}`: {res['pool']['input']} samples "
        f"({res['pool']['trainable']} trainable). Each arm trains `{c['arch']}` for "
        f"{c['steps']} steps × batch {c['batch_size']} = {comp['samples_seen_per_model']} "
        f"samples seen, seeds {', '.join(str(s) for s in comp['seeds'])}; the world "
        f"benchmarks use eval seed {c['eval_seed']}. Scores in %, with "
        f"{round(res['bootstrap']['confidence'] * 100)}% bootstrap intervals over test scenes "
        "and training seeds; differences are paired (same test resamples, same seed).",
        "",
    ]
    issues = res["pool"].get("planted_share") or {}
    head = ["arm", "rules", "kept", "kept %"]
    head += [f"{i} %" for i in issues]
    head += ["epochs", "train s (all seeds)"]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for a in arms:
        row = [
            _cell(a["name"]),
            _cell(a["rules"] or "—"),
            str(a["kept"]),
            f"{a['kept_share'] * 100:.1f}",
        ]
        row += [f"{(a.get('kept_issue_share') or {}).get(i, 0.0) * 100:.1f}" for i in issues]
        row += [f"{a['runs'][0]['epochs']:.1f}", f"{a['train_seconds']:.0f}"]
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", "Scores:", ""]
    head = ["benchmark", "metric"] + [_cell(a["name"]) for a in arms]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for bench, metric in HEADLINE:
        row = [bench, metric] + [_score(a["benchmarks"][bench][metric]) for a in arms]
        lines.append("| " + " | ".join(row) + " |")
    others = [a for a in arms if a["name"] != RAW_ARM]
    if others:
        lines += [
            "",
            f"Difference to the `{RAW_ARM}` arm (percentage points; **✓** better with the "
            "interval excluding zero, ✗ worse with it excluding zero):",
            "",
        ]
        head = ["benchmark", "metric"] + [f"{_cell(a['name'])} − {RAW_ARM}" for a in others]
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for bench, metric in HEADLINE:
            row = [bench, metric] + [_diff(a["difference_to_raw"][bench][metric]) for a in others]
            lines.append("| " + " | ".join(row) + " |")
    t = res["timings"]
    lines += [
        "",
        f"Time: {t['total_seconds']:.0f} s in all (pool decode {t['pool_seconds']:.0f} s, "
        f"curation {t['curation_seconds']:.0f} s, benchmark rendering "
        f"{t['benchmark_render_seconds']:.0f} s, training and scoring "
        f"{t['train_and_score_seconds']:.0f} s, bootstrap {t['bootstrap_seconds']:.0f} s) on "
        f"{res['machine']['cpus']} CPUs; {res['machine']['train_workers']} training processes "
        "of one torch thread each.",
    ]
    if "train_cpu_seconds" in t:
        lines[-1] += (
            f" CPU time: {t['main_process_cpu_seconds']:.0f} s in the main process, "
            f"{t['train_cpu_seconds']:.0f} s in training."
        )
    for note in res.get("notes", []):
        lines += ["", f"Note: {note}"]
    return "\n".join(lines) + "\n"
