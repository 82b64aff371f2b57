"""The probe registry: name → pure function ``(BiasContext) -> ProbeResult``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from clipaudit.errors import ClipauditError
from clipaudit.evaluate.bias.context import BiasContext


@dataclass
class ProbeResult:
    """Headline metrics ({"value", "ci"}), the probe's detail block, long-table rows
    (one per prompt × group × metric), per-sample columns and notes."""

    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)
    detail: dict[str, Any] = field(default_factory=dict)
    rows: list[dict[str, Any]] = field(default_factory=list)
    per_sample: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


Probe = Callable[[BiasContext], ProbeResult]
P = TypeVar("P", bound=Probe)
PROBES: dict[str, Probe] = {}
# The prompt-set role each probe reads from BiasContext.prompts.
PROBE_ROLES: dict[str, str] = {}


def probe(name: str, role: str) -> Callable[[P], P]:
    def deco(fn: P) -> P:
        PROBES[name] = fn
        PROBE_ROLES[name] = role
        return fn

    return deco


def get_probes(spec: str) -> list[str]:
    """``all`` or a comma-separated list of probe names, checked."""
    from clipaudit.evaluate.bias import probes  # noqa: F401  (fills the registry)

    names = list(PROBES) if spec == "all" else [s.strip() for s in spec.split(",") if s.strip()]
    bad = [n for n in names if n not in PROBES]
    if bad or not names:
        raise ClipauditError(
            f"Unknown bias probe {(bad or [spec])[0]!r}; use all or one of: {', '.join(PROBES)}."
        )
    return names
