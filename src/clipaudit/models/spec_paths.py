"""Model specs as a run records them: without torch (curate calls this before any model)."""

from __future__ import annotations

from pathlib import Path

# Spec kinds whose part after the colon is a name, not a path on this machine.
NAMED_KINDS = ("bundled", "random", "hf-hub")


def portable_spec(spec: str) -> str:
    """``spec`` with a relative model folder (``local-dir:m``) or checkpoint (``RN50:w.pt``)
    made absolute, so a run that records it can be searched and re-decided from any working
    folder. Names and paths that do not exist here are returned unchanged."""
    prefix, sep, rest = spec.partition(":")
    if not sep or not rest or prefix in NAMED_KINDS:
        return spec
    path = Path(rest).expanduser()
    if path.is_absolute() or not path.exists():
        return spec
    return f"{prefix}:{path.resolve()}"
