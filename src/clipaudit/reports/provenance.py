"""The provenance header: tool version, input fingerprint, rules pack (diffed against the pack
it extends), model provenance, dates."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

from clipaudit import __version__
from clipaudit.errors import ClipauditError

# Pack keys that name the pack rather than set a rule: left out of the diff.
_PACK_IDENTITY = {"name", "version", "description", "extends"}


def _flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(obj, dict) and obj:
        out: dict[str, Any] = {}
        for k, v in obj.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: obj}


def pack_diff(pack: dict[str, Any]) -> dict[str, Any]:
    """Every setting where the run's pack differs from the pack it extends."""
    parent_ref = pack.get("extends")
    if not parent_ref:
        return {"extends": None, "changes": [], "note": "the pack extends no other pack"}
    from clipaudit.rules.schema import load_pack

    try:
        parent = json.loads(load_pack(str(parent_ref)).model_dump_json())
    except ClipauditError as err:
        return {"extends": parent_ref, "changes": [], "note": f"parent not loadable: {err}"}
    mine = {k: v for k, v in _flatten(pack).items() if k.split(".")[0] not in _PACK_IDENTITY}
    theirs = {k: v for k, v in _flatten(parent).items() if k.split(".")[0] not in _PACK_IDENTITY}
    changes = [
        {"setting": k, "parent": theirs.get(k), "this_pack": mine.get(k)}
        for k in sorted(set(mine) | set(theirs))
        if mine.get(k) != theirs.get(k)
    ]
    return {"extends": parent_ref, "changes": changes, "note": None}


def _model_summary(prov: dict[str, Any]) -> dict[str, Any]:
    keys = ("spec", "source", "arch", "pretrained", "weights_sha256", "embed_dim", "device")
    return {k: prov.get(k) for k in keys if k in prov}


def _detectors(stage_prov: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The non-CLIP models that scored the run (nudenet, the visible-watermark detector):
    the report named only the CLIP model, though these decide drops too."""
    out: dict[str, dict[str, Any]] = {}
    nsfw = stage_prov.get("nsfw")
    if isinstance(nsfw, dict) and nsfw.get("detector"):
        libs = [f"{k} {nsfw[k]}" for k in ("nudenet", "onnxruntime") if nsfw.get(k)]
        out["nsfw"] = {"detector": nsfw["detector"], "weights_sha256": None, "libraries": libs}
    vis = stage_prov.get("visible_watermark")
    if isinstance(vis, dict) and vis.get("arch"):
        size = f", {vis['input_size']} px input" if vis.get("input_size") else ""
        shas = [vis.get("weights_sha256"), vis.get("backbone_sha256")]
        out["visible_watermark"] = {
            "detector": f"clipaudit visible-watermark detector ({vis['arch']}{size})",
            "weights_sha256": " / ".join(str(x) for x in shas if x) or None,
            "libraries": [],
        }
    return out


def now_utc() -> str:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat()


def file_time(path: Path) -> str | None:
    if not path.is_file():
        return None
    t = dt.datetime.fromtimestamp(path.stat().st_mtime, dt.timezone.utc)
    return t.replace(microsecond=0).isoformat()


def run_provenance(run: Path, record: dict[str, Any], stats: dict[str, Any]) -> dict[str, Any]:
    stage_prov = record.get("stage_provenance", {}) or {}
    models = {
        stage: _model_summary(p if "spec" in p else p.get("clip") or {})
        for stage, p in sorted(stage_prov.items())
        if isinstance(p, dict) and ("spec" in p or isinstance(p.get("clip"), dict))
    }
    pack = stats.get("pack_dump") or {}
    ds = record.get("dataset", {})
    return {
        "tool_version": record.get("clipaudit"),
        "report_tool_version": __version__,
        "input_fingerprint": record.get("fingerprint"),
        "dataset": {
            "source": ds.get("source"),
            "format": ds.get("format"),
            "shards": len(ds.get("shards", [])),
        },
        "stages": record.get("settings", {}).get("stages"),
        "model": record.get("settings", {}).get("model"),
        "models": models,
        "detectors": _detectors(stage_prov),
        "pack": {
            "name": stats.get("pack", {}).get("name"),
            "version": stats.get("pack", {}).get("version"),
            "description": pack.get("description"),
            "diff": pack_diff(pack),
        },
        "decided_at": file_time(run / "stats.json"),
        "report_date": now_utc(),
        "versions": record.get("versions", {}),
    }


def eval_provenance(result: dict[str, Any], path: Path) -> dict[str, Any]:
    model = result.get("model") or {}
    prompts = result.get("prompts") or {}
    fps: dict[str, Any] = {}
    if isinstance(prompts, dict) and "fingerprint" in prompts:
        fps["prompts"] = prompts.get("fingerprint")
    elif isinstance(prompts, dict):
        fps = {role: p.get("fingerprint") for role, p in prompts.items() if isinstance(p, dict)}
    return {
        "tool_version": (model.get("versions") or {}).get("clipaudit"),
        "report_tool_version": __version__,
        "schema": result.get("schema"),
        "task": result.get("task"),
        "dataset": {k: result.get("dataset", {}).get(k) for k in ("name", "source", "format", "n")},
        "prompt_fingerprints": fps,
        "model": _model_summary(model),
        "bootstrap": result.get("bootstrap"),
        "seed": result.get("seed"),
        "evaluated_at": file_time(path),
        "report_date": now_utc(),
    }
