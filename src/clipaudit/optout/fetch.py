"""``clipaudit optout fetch``: collect robots.txt, ai.txt and tdmrep.json for every origin
of a dataset's urls into the cache, with bounded concurrency and a per-host rate limit.

This is the only networked part of opt-out checking; the curate stage reads the cache.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from clipaudit.data.sample import Sample
from clipaudit.errors import ClipauditError
from clipaudit.optout.agents import DEFAULT_AGENTS
from clipaudit.optout.cache import FILES, MAX_TTL_S, SCHEMA, is_fresh, read_entry, write_entry
from clipaudit.optout.http_get import (
    Fetched,
    HostRateLimiter,
    HttpSettings,
    env_proxy,
    http_get,
)
from clipaudit.optout.origin import origin_of
from clipaudit.optout.robots import complete_lines, disallowed_agents, parse_rules
from clipaudit.optout.tdmrep import parse_tdmrep_counted


@dataclass
class FetchConfig:
    agents: tuple[str, ...] = DEFAULT_AGENTS
    concurrency: int = 8
    rate_per_host: float = 1.0  # request starts per second to one host:port
    ttl_s: float = MAX_TTL_S
    refresh: bool = False  # refetch even where the cache is still fresh
    http: HttpSettings = field(default_factory=HttpSettings)

    def validate(self) -> None:
        if self.concurrency < 1:
            raise ClipauditError(f"--concurrency {self.concurrency} must be at least 1.")
        if not self.rate_per_host > 0:
            raise ClipauditError(f"--rate-per-host {self.rate_per_host} must be above 0.")
        if not 0 < self.ttl_s <= MAX_TTL_S:
            raise ClipauditError(
                f"--ttl {self.ttl_s:g} must be above 0 and at most {MAX_TTL_S} seconds (24 h)."
            )
        for scheme in ("http", "https"):
            try:
                env_proxy(scheme, "")
            except ValueError as exc:
                raise ClipauditError(
                    f"{str(exc)[0].upper()}{str(exc)[1:]}: set an http:// proxy or unset it."
                ) from None
        if not self.http.timeout > 0 or not self.http.deadline > 0:
            raise ClipauditError(
                f"--timeout {self.http.timeout:g} and --deadline {self.http.deadline:g} must "
                "be above 0 seconds."
            )


def dataset_origins(samples: Iterable[Sample]) -> tuple[list[str], dict[str, int]]:
    """Sorted distinct origins of the samples' urls, and counts of samples without one."""
    origins: set[str] = set()
    counts = {"samples": 0, "no_url": 0, "bad_url": 0}
    for s in samples:
        counts["samples"] += 1
        if not s.url:
            counts["no_url"] += 1
            continue
        o = origin_of(s.url)
        if o is None:
            counts["bad_url"] += 1
        else:
            origins.add(o)
    return sorted(origins), counts


def body_text(body: bytes) -> tuple[str, str]:
    """The text of a fetched file and the encoding it was read in. RFC 9309 and the other
    protocols ask for UTF-8, but a robots.txt saved as UTF-16 by a Windows editor (its byte
    order mark says so) still states the publisher's wish; read as UTF-8 its rules would
    vanish and the opt-out with them."""
    for bom, codec in ((b"\xff\xfe", "utf-16-le"), (b"\xfe\xff", "utf-16-be")):
        if body.startswith(bom):
            return body[len(bom) :].decode(codec, errors="replace"), "utf-16"
    return body.decode("utf-8", errors="replace").removeprefix("\ufeff"), "utf-8"


def file_record(name: str, got: Fetched, agents: Iterable[str]) -> dict[str, Any]:
    """The cache record of one fetched file, parsed as far as its protocol needs."""
    rec: dict[str, Any] = {
        "url": got.url,
        "final_url": got.final_url,
        "status": got.status,
        "outcome": got.outcome,
        "error": got.error,
        "redirects": len(got.redirects),
        "bytes": len(got.body),
        "truncated": got.truncated,
        "elapsed_s": got.elapsed_s,
    }
    if got.proxy:
        rec["proxy"] = got.proxy
    if got.outcome != "fetched":
        return rec
    text, encoding = body_text(got.body)
    if encoding != "utf-8":
        rec["encoding"] = encoding
    if name == "tdmrep":
        entries, dropped = parse_tdmrep_counted(text)
        rec["entries"] = entries
        if dropped:  # paths none of the kept entries match read as unknown, never allowed
            rec["entries_dropped"] = dropped
        if entries is None:
            rec["outcome"] = "malformed"  # a protocol error: read as no declaration
    else:
        if got.truncated:  # cut at the read limit: its unfinished last line is no rule
            text = complete_lines(text)
        rec["body"] = text
        rules = parse_rules(text, aitxt=name == "aitxt")
        denied = set(disallowed_agents(rules, "/", agents))
        rec["root"] = {a: "disallowed" if a in denied else "allowed" for a in agents}
    return rec


def fetch_origins(
    origins: list[str],
    cache_dir: Path,
    cfg: FetchConfig,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Fetch the three files of each origin not fresh in the cache; returns a summary."""
    cfg.validate()
    cache_dir.mkdir(parents=True, exist_ok=True)
    todo = [o for o in origins if cfg.refresh or not is_fresh(read_entry(cache_dir, o))]
    limiter = HostRateLimiter(cfg.rate_per_host)
    outcomes: dict[str, dict[str, int]] = {n: {} for n in FILES}
    pending: dict[str, dict[str, Fetched]] = {o: {} for o in todo}
    t0 = time.monotonic()
    done = 0
    with ThreadPoolExecutor(max_workers=cfg.concurrency) as pool:
        futures: dict[Future[Fetched], tuple[str, str]] = {
            pool.submit(http_get, origin + path, cfg.http, limiter): (origin, name)
            for origin in todo
            for name, path in FILES.items()
        }
        waiting = set(futures)
        while waiting:
            finished, waiting = wait(waiting, return_when=FIRST_COMPLETED)
            for fut in finished:
                origin, name = futures[fut]
                pending[origin][name] = fut.result()
                if len(pending[origin]) < len(FILES):
                    continue
                got = pending.pop(origin)
                files = {n: file_record(n, got[n], cfg.agents) for n in FILES}
                for n, rec in files.items():
                    outcomes[n][rec["outcome"]] = outcomes[n].get(rec["outcome"], 0) + 1
                now = time.time()
                write_entry(
                    cache_dir,
                    {
                        "schema": SCHEMA,
                        "origin": origin,
                        "fetched_at": now,
                        "fetched_at_iso": datetime.fromtimestamp(now, timezone.utc).isoformat(),
                        "ttl_s": cfg.ttl_s,
                        "user_agent": cfg.http.user_agent,
                        "agents": list(cfg.agents),
                        "files": files,
                    },
                )
                done += 1
                if progress:
                    progress(done, len(todo))
    return {
        "origins": len(origins),
        "fetched": len(todo),
        "fresh": len(origins) - len(todo),
        "outcomes": outcomes,
        "seconds": round(time.monotonic() - t0, 3),
        "cache": str(cache_dir),
    }


def fetch_samples(
    samples: Iterable[Sample],
    cache_dir: Path,
    cfg: FetchConfig,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Fetch for every origin of ``samples``' urls; the summary adds the url counts."""
    cfg.validate()
    origins, counts = dataset_origins(samples)
    return {**fetch_origins(origins, cache_dir, cfg, progress), **counts}
