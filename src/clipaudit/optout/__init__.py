"""Machine-readable opt-outs: robots.txt and ai.txt for AI-training agents, TDMRep, and
X-Robots-Tag / ``<meta>`` directives captured at crawl time.

``fetch`` is the only part that touches the network (``clipaudit optout fetch``); the
curate stage ``optout`` reads its cache and the captured headers, offline.
"""

from clipaudit.optout.agents import DEFAULT_AGENTS, DEFAULT_HEADER_DIRECTIVES, USER_AGENT
from clipaudit.optout.cache import read_entry
from clipaudit.optout.fetch import FetchConfig, fetch_origins, fetch_samples
from clipaudit.optout.http_get import HttpSettings, http_get
from clipaudit.optout.origin import origin_of

__all__ = [
    "DEFAULT_AGENTS",
    "DEFAULT_HEADER_DIRECTIVES",
    "USER_AGENT",
    "FetchConfig",
    "HttpSettings",
    "fetch_origins",
    "fetch_samples",
    "http_get",
    "origin_of",
    "read_entry",
]
