"""Rules-pack section for machine-readable opt-out signals (robots.txt, ai.txt, TDMRep,
X-Robots-Tag and ``<meta>``); the actions for their reason codes live under ``actions``."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from clipaudit.optout.agents import DEFAULT_AGENTS, DEFAULT_HEADER_DIRECTIVES, valid_agent
from clipaudit.rules.base import Strict

Protocol = Literal["xrobots", "robots", "aitxt", "tdmrep"]
CachedProtocol = Literal["robots", "aitxt", "tdmrep"]
ALL_CACHED: tuple[CachedProtocol, ...] = ("robots", "aitxt", "tdmrep")
ALL_PROTOCOLS: tuple[Protocol, ...] = ("xrobots", *ALL_CACHED)


class OptoutRules(Strict):
    # AI-training user-agent tokens we answer for: a rule disallowing any of them, or an
    # ``agent: noai`` header naming one, is an opt-out.
    agents: list[str] = Field(default_factory=lambda: list(DEFAULT_AGENTS))
    # X-Robots-Tag / meta robots words that opt out (img2dataset's default list).
    header_directives: list[str] = Field(default_factory=lambda: list(DEFAULT_HEADER_DIRECTIVES))
    # Protocols whose opt-outs give reason codes.
    protocols: list[Protocol] = Field(default_factory=lambda: list(ALL_PROTOCOLS))
    # Cached protocols whose "unknown" (origin not in the cache, or ai.txt / tdmrep.json
    # unreachable) gives ``optout_unknown``; its action says keep, flag or drop.
    unknown_protocols: list[CachedProtocol] = Field(default_factory=lambda: list(ALL_CACHED))

    @field_validator("agents")
    @classmethod
    def _agents(cls, v: list[str]) -> list[str]:
        bad = [a for a in v if not valid_agent(a)]
        if bad:
            raise ValueError(
                f"{bad[0]!r} is not a user-agent product token (letters, digits, '-', '_')"
            )
        if not v:
            raise ValueError("list at least one agent token, e.g. GPTBot")
        return v

    @field_validator("header_directives")
    @classmethod
    def _directives(cls, v: list[str]) -> list[str]:
        out = [d.strip().lower() for d in v]
        bad = [d for d in out if not d or ":" in d or "," in d or " " in d]
        if bad:
            raise ValueError(f"{bad[0]!r} is not one directive word such as noai")
        return out
