"""The opt-out cache: one JSON file per origin, named by the origin's sha256.

Each file holds, for robots.txt, ai.txt and tdmrep.json: the url asked and the url that
answered, the HTTP status, the outcome (``fetched`` / ``unavailable`` / ``unreachable``,
plus ``malformed`` for a tdmrep.json that is not a JSON array), the body text (robots, ai.txt)
or the parsed entries (TDMRep), and for robots and ai.txt whether each agent may fetch "/".
Reading is defensive: a damaged or foreign file reads as "not in the cache".
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from clipaudit.data.formats import atomic_write_bytes
from clipaudit.optout.origin import cache_name

SCHEMA = 1
# RFC 9309: a cached robots.txt should not be used for more than 24 hours.
MAX_TTL_S = 24 * 3600
FILES: dict[str, str] = {
    "robots": "/robots.txt",
    "aitxt": "/ai.txt",
    "tdmrep": "/.well-known/tdmrep.json",
}
OUTCOMES = ("fetched", "unavailable", "unreachable", "malformed")


def cache_path(cache_dir: Path, origin: str) -> Path:
    return cache_dir / cache_name(origin)


def write_entry(cache_dir: Path, entry: dict[str, Any]) -> Path:
    """Write one origin's record atomically; returns its path."""
    path = cache_path(cache_dir, str(entry["origin"]))
    atomic_write_bytes(path, json.dumps(entry, ensure_ascii=False, sort_keys=True).encode())
    return path


def _valid_file(rec: Any, name: str) -> bool:
    if not isinstance(rec, dict) or rec.get("outcome") not in OUTCOMES:
        return False
    if name == "tdmrep":
        entries = rec.get("entries")
        return entries is None or (
            isinstance(entries, list)
            and all(isinstance(e, dict) and isinstance(e.get("location"), str) for e in entries)
        )
    return isinstance(rec.get("body", ""), str)


def read_entry(cache_dir: Path, origin: str) -> dict[str, Any] | None:
    """The cached record of ``origin``, or None when missing, damaged or for another origin."""
    try:
        data = json.loads(cache_path(cache_dir, origin).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("schema") != SCHEMA or data.get("origin") != origin:
        return None
    files = data.get("files")
    if not isinstance(files, dict):
        return None
    # A file record that does not parse is dropped, so that protocol reads as unknown.
    data["files"] = {k: v for k, v in files.items() if k in FILES and _valid_file(v, k)}
    return data


def is_fresh(entry: dict[str, Any] | None, now: float | None = None) -> bool:
    """Whether a cached record is younger than its TTL (never more than 24 hours)."""
    if entry is None:
        return False
    fetched, ttl = entry.get("fetched_at"), entry.get("ttl_s")
    if not isinstance(fetched, (int, float)) or not isinstance(ttl, (int, float)):
        return False
    age = (time.time() if now is None else now) - fetched
    return 0 <= age < min(float(ttl), MAX_TTL_S)
