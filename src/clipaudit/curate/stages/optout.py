"""Opt-out signals: X-Robots-Tag and ``<meta>`` from the captured crawl data, and robots.txt,
ai.txt and TDMRep from the cache ``clipaudit optout fetch`` wrote (run option
``optout_cache``). The stage never touches the network, so curation stays offline and
deterministic: an origin missing from the cache is "unknown", and the pack decides.

Status columns read "allowed" / "disallowed" / "unknown", or null where nothing was checked
(no url, no cache, no captured headers). The ``*_agents`` and ``*_directives`` columns keep
the evidence, so re-deciding with other agents or directives needs no new scoring.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from clipaudit.curate.stages import Batch, Stage, StageContext, register_stage
from clipaudit.curate.stages.reasons import Signals, column, register_rule, register_stats
from clipaudit.data.sample import Sample
from clipaudit.errors import ClipauditError
from clipaudit.optout.agents import DEFAULT_AGENTS, DEFAULT_HEADER_DIRECTIVES
from clipaudit.optout.cache import SCHEMA, is_fresh, read_entry
from clipaudit.optout.headers import header_values, matching_directive, parse_directives
from clipaudit.optout.html_meta import html_metas, meta_robots_values, meta_value
from clipaudit.optout.origin import origin_of, path_of
from clipaudit.optout.robots import Rules, disallowed_agents, parse_rules
from clipaudit.optout.tdmrep import match_entry, resolve
from clipaudit.rules.schema import Pack

# "Every agent": what an unreachable robots.txt (RFC 9309: complete disallow) denies.
ALL_AGENTS = "*"
# Parsed robots files kept per stage; a bigger crawl re-reads them from the cache.
_MEMO_LIMIT = 20_000
PROTOCOLS = ("xrobots", "robots", "aitxt", "tdmrep")
log = logging.getLogger(__name__)


def _iso(t: float | None) -> str | None:
    return datetime.fromtimestamp(t, timezone.utc).isoformat() if t is not None else None


def cache_summary(cache: Path, now: float) -> dict[str, Any]:
    """Entries in the cache folder (files that read as an origin's record; other JSON files
    do not count), their oldest and newest fetch time, and how many are past their TTL."""
    n = stale = 0
    oldest: float | None = None
    newest: float | None = None
    for path in cache.glob("*.json"):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if not isinstance(data, dict) or data.get("schema") != SCHEMA:
            continue
        if not isinstance(data.get("origin"), str) or not isinstance(data.get("files"), dict):
            continue
        n += 1
        t = data.get("fetched_at")
        if isinstance(t, (int, float)) and not isinstance(t, bool):
            oldest = t if oldest is None else min(oldest, t)
            newest = t if newest is None else max(newest, t)
        if not is_fresh(data, now):
            stale += 1
    return {
        "cached_origins": n,
        "oldest_fetch": _iso(oldest),
        "newest_fetch": _iso(newest),
        "stale_origins": stale,
    }


@register_stage("optout")
class OptoutStage(Stage):
    columns = (
        "optout_xrobots",
        "optout_xrobots_directives",
        "optout_xrobots_match",
        "optout_robots",
        "optout_robots_agents",
        "optout_aitxt",
        "optout_aitxt_agents",
        "optout_tdmrep",
        "optout_tdmrep_source",
        "optout_tdmrep_policy",
    )

    def __init__(self) -> None:
        self.cache: Path | None = None
        self.agents: list[str] = list(DEFAULT_AGENTS)
        self.directives: list[str] = list(DEFAULT_HEADER_DIRECTIVES)
        self._entries: dict[str, dict[str, Any] | None] = {}
        self._rules: dict[tuple[str, str], Rules] = {}
        self._now: float | None = None  # the freshness clock, fixed at setup

    def setup(self, ctx: StageContext) -> None:
        from clipaudit.rules.schema import load_pack

        opt = load_pack(str(ctx.options.get("rules") or "default")).optout
        # The pack's agents plus the default list, so a later pack can only narrow them.
        seen = {a.lower() for a in opt.agents}
        self.agents = list(opt.agents) + [a for a in DEFAULT_AGENTS if a.lower() not in seen]
        self.directives = list(opt.header_directives)
        raw = ctx.options.get("optout_cache")
        if raw:
            path = Path(str(raw))
            if not path.is_dir():
                raise ClipauditError(
                    f"The opt-out cache {str(raw)!r} is not a folder; run "
                    "'clipaudit optout fetch DATASET --cache DIR' first."
                )
            self.cache = path
        self._now = time.time()

    def provenance(self) -> dict[str, Any]:
        if self.cache is None:
            return {"cache": None, "cached_origins": 0}
        now = self._now if self._now is not None else time.time()
        summary = cache_summary(self.cache, now)
        if summary["stale_origins"]:
            log.warning(
                "%d of %d opt-out cache entries in %s are older than their TTL (at most 24 h, "
                "RFC 9309); their origins read as unknown. Run 'clipaudit optout fetch' again.",
                summary["stale_origins"],
                summary["cached_origins"],
                self.cache,
            )
        return {
            "cache": str(self.cache),
            **summary,
            "stale_entries": "unknown",  # how a stale entry is read
        }

    def _entry(self, origin: str) -> dict[str, Any] | None:
        if origin not in self._entries:
            if len(self._entries) > _MEMO_LIMIT:
                self._entries.clear()
                self._rules.clear()
            assert self.cache is not None
            entry = read_entry(self.cache, origin)
            # Past its TTL (never more than 24 h, RFC 9309 §2.4) an entry is as good as not
            # fetched: the origin reads as unknown, never as the old answer.
            if entry is not None and not is_fresh(entry, self._now):
                entry = None
            self._entries[origin] = entry
        return self._entries[origin]

    def _cached(self, origin: str | None, name: str) -> dict[str, Any] | None:
        entry = self._entry(origin) if origin else None
        return entry["files"].get(name) if entry else None

    def _robots(self, origin: str | None, url: str, name: str) -> tuple[str, str | None]:
        """(status, disallowing agents joined by ",") of robots.txt or ai.txt for ``url``."""
        rec = self._cached(origin, name)
        if rec is None:
            return "unknown", None
        outcome = rec["outcome"]
        if outcome == "unreachable":
            # RFC 9309 reads an unreachable robots.txt as complete disallow; ai.txt has no
            # such rule, so there it stays unknown.
            return ("disallowed", ALL_AGENTS) if name == "robots" else ("unknown", None)
        if outcome != "fetched":
            return "allowed", ""
        key = (str(origin), name)
        if key not in self._rules:
            self._rules[key] = parse_rules(
                rec.get("body", ""), aitxt=name == "aitxt", truncated=bool(rec.get("truncated"))
            )
        denied = disallowed_agents(self._rules[key], path_of(url), self.agents)
        return ("disallowed" if denied else "allowed"), ",".join(denied)

    def _tdmrep(
        self, origin: str | None, url: str | None, headers: Any, metas: list[tuple[str, str]]
    ) -> tuple[str | None, str | None, str | None]:
        rec = self._cached(origin, "tdmrep") if self.cache and url else None
        file_known = rec is not None and rec["outcome"] != "unreachable"
        entries = rec.get("entries") if rec is not None and rec["outcome"] == "fetched" else None
        h = header_values(headers, "tdm-reservation")
        hp = header_values(headers, "tdm-policy")
        res = resolve(
            entries,
            path_of(url) if url else "/",
            header=h[0] if h else None,
            header_policy=hp[0] if hp else None,
            meta=meta_value(metas, "tdm-reservation"),
            meta_policy=meta_value(metas, "tdm-policy"),
        )
        if res.reservation is not None:
            status = "disallowed" if res.reservation == 1 else "allowed"
        elif file_known and rec is not None and _tdm_incomplete(rec, entries, url):
            status = "unknown"  # the file was cut: what it said about this path is lost
        elif file_known:
            status = "allowed"  # checked, and nothing reserved
        elif self.cache and url:
            status = "unknown"
        else:
            status = None
        return status, res.source, res.policy

    def sample_columns(self, s: Sample) -> dict[str, Any]:
        """The opt-out columns of one sample (bad metadata reads as no data, never raises)."""
        meta = s.meta if isinstance(s.meta, dict) else {}
        headers = meta.get("headers")
        metas = html_metas(meta.get("html"))
        values = header_values(headers, "x-robots-tag") + meta_robots_values(metas, self.agents)
        checked = isinstance(headers, (dict, list)) or bool(metas)
        directives = parse_directives(values, self.agents)
        match = matching_directive(directives, self.directives, self.agents)
        url = s.url if isinstance(s.url, str) and s.url else None
        origin = origin_of(url) if url else None
        robots: tuple[str | None, str | None] = (None, None)
        aitxt: tuple[str | None, str | None] = (None, None)
        if self.cache and url:
            robots = self._robots(origin, url, "robots")
            aitxt = self._robots(origin, url, "aitxt")
        tdm, source, policy = self._tdmrep(origin, url, headers, metas)
        return {
            "optout_xrobots": (match is not None) if checked else None,
            "optout_xrobots_directives": ",".join(directives) if checked else None,
            "optout_xrobots_match": match,
            "optout_robots": robots[0],
            "optout_robots_agents": robots[1],
            "optout_aitxt": aitxt[0],
            "optout_aitxt_agents": aitxt[1],
            "optout_tdmrep": tdm,
            "optout_tdmrep_source": source,
            "optout_tdmrep_policy": policy,
        }

    def process(self, batch: Batch) -> dict[str, list[Any]]:
        out: dict[str, list[Any]] = {c: [] for c in self.columns}
        for s in batch.samples:
            for name, value in self.sample_columns(s).items():
                out[name].append(value)
        return out


def _tdm_incomplete(rec: dict[str, Any], entries: Any, url: str | None) -> bool:
    """Whether a tdmrep.json lost entries (cut at the read limit, or past ``MAX_ENTRIES``)
    and none of those kept speaks for ``url``'s path."""
    if not (rec.get("truncated") or rec.get("entries_dropped")):
        return False
    if not isinstance(entries, list):
        return True
    return match_entry(entries, path_of(url) if url else "/") is None


def _split(value: Any) -> list[str]:
    return [v for v in value.split(",") if v] if isinstance(value, str) else []


def _agent_optout(status: Any, agents: Any, ours: set[str]) -> bool:
    if status != "disallowed":
        return False
    listed = _split(agents)
    return ALL_AGENTS in listed or any(a.lower() in ours for a in listed)


def row_verdicts(sig: Signals, pack: Pack) -> list[dict[str, str | None]]:
    """Per row and protocol: "disallowed" / "allowed" / "unknown" / None under ``pack``."""
    opt = pack.optout
    ours = {a.lower() for a in opt.agents}
    cols = {c: column(sig, c) for c in OptoutStage.columns}
    out: list[dict[str, str | None]] = []
    for i in range(len(sig["id"])):
        row: dict[str, str | None] = {}
        xr = cols["optout_xrobots"][i]
        if xr is None:
            row["xrobots"] = None
        else:
            dirs = _split(cols["optout_xrobots_directives"][i])
            hit = matching_directive(dirs, opt.header_directives, opt.agents)
            row["xrobots"] = "disallowed" if hit else "allowed"
        for name in ("robots", "aitxt"):
            status = cols[f"optout_{name}"][i]
            if status == "disallowed" and not _agent_optout(
                status, cols[f"optout_{name}_agents"][i], ours
            ):
                status = "allowed"  # only agents this pack does not answer for are denied
            row[name] = status
        row["tdmrep"] = cols["optout_tdmrep"][i]
        out.append(row)
    return out


@register_rule("optout")
def optout_reasons(sig: Signals, pack: Pack) -> list[list[str]]:
    """``optout_<protocol>`` where a protocol the pack counts says disallowed, and
    ``optout_unknown`` where one the pack wants checked could not be; no data, no reason."""
    opt = pack.optout
    counted = set(opt.protocols)
    unknown = counted & set(opt.unknown_protocols)
    reasons: list[list[str]] = []
    for row in row_verdicts(sig, pack):
        r = [f"optout_{p}" for p in PROTOCOLS if p in counted and row[p] == "disallowed"]
        if any(row[p] == "unknown" for p in unknown):
            r.append("optout_unknown")
        reasons.append(r)
    return reasons


@register_stats("optout")
def optout_stats(sig: Signals, pack: Pack, reasons: list[list[str]]) -> dict[str, Any]:
    """Coverage per protocol: checked (a definite answer), opted out, unknown, not checked."""
    if not any(c in sig for c in OptoutStage.columns):
        return {"computed": False}
    rows = row_verdicts(sig, pack)
    out: dict[str, Any] = {"computed": True}
    for p in PROTOCOLS:
        vals = [r[p] for r in rows]
        out[p] = {
            "checked": sum(v in ("allowed", "disallowed") for v in vals),
            "opted_out": vals.count("disallowed"),
            "unknown": vals.count("unknown"),
            "not_checked": vals.count(None),
        }
    # Of robots' opt-outs, those where robots.txt could not be read: RFC 9309 has a crawler
    # treat that as disallow-all, but the publisher stated nothing, and a compliance summary
    # must not count a server error as a reservation.
    agents = column(sig, "optout_robots_agents") if "optout_robots_agents" in sig else None
    out["robots"]["unreachable"] = (
        sum(r["robots"] == "disallowed" and agents[i] == ALL_AGENTS for i, r in enumerate(rows))
        if agents is not None
        else 0
    )
    out["any_opted_out"] = sum(
        any(r[p] == "disallowed" for p in pack.optout.protocols) for r in rows
    )
    return out
