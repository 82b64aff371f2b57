"""RFC 9309 / TDMRep corner cases: whole-token group selection, a body cut at the read
limit, stale cache entries, a tdmrep.json with more entries than we keep, percent-encoding."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from clipaudit.curate.stages.optout import OptoutStage
from clipaudit.data.sample import Sample
from clipaudit.optout import FetchConfig, HttpSettings, read_entry
from clipaudit.optout.agents import DEFAULT_AGENTS
from clipaudit.optout.cache import write_entry
from clipaudit.optout.fetch import fetch_origins
from clipaudit.optout.http_get import MAX_BYTES
from clipaudit.optout.robots import disallowed_agents, parse_rules
from clipaudit.optout.tdmrep import parse_tdmrep, resolve
from tests.test_optout_support import Route, serve

FAST = HttpSettings(timeout=0.5, deadline=2.0)
ALL = list(DEFAULT_AGENTS)
EVERYONE_BUT = lambda *xs: [a for a in ALL if a not in xs]  # noqa: E731


@pytest.mark.parametrize(
    ("body", "denied"),
    [
        # A group for a shorter token is not ours: we fall back to "*".
        ("User-agent: Applebot\nAllow: /\n\nUser-agent: *\nDisallow: /\n", ALL),
        ("User-agent: Google\nAllow: /\n\nUser-agent: *\nDisallow: /\n", ALL),
        ("User-agent: Ai2Bot\nAllow: /\n\nUser-agent: *\nDisallow: /\n", ALL),
        # ... and a shorter token's Disallow does not reach us.
        (
            "User-agent: Applebot\nDisallow: /\n\nUser-agent: Google\nDisallow: /\n\n"
            "User-agent: bot\nDisallow: /\n\nUser-agent: *\nAllow: /\n",
            [],
        ),
        # Our own token, in any case, still selects its group over "*".
        (
            "User-agent: applebot-extended\nAllow: /\n\nUser-agent: *\nDisallow: /\n",
            EVERYONE_BUT("Applebot-Extended"),
        ),
        ("User-agent: GPTBot/1.0\nDisallow: /\n", ["GPTBot"]),
        # Repeated groups merge; a multi-agent group applies to each.
        (
            "User-agent: GPTBot\nUser-agent: CCBot\nDisallow: /a/\n\n"
            "User-agent: gptbot\nDisallow: /b.jpg\n\nUser-agent: *\nDisallow: /\n",
            EVERYONE_BUT("CCBot"),
        ),
    ],
)
def test_groups_match_the_whole_product_token(body: str, denied: list[str]) -> None:
    assert disallowed_agents(parse_rules(body), "/b.jpg", ALL) == denied


def test_group_rules_keep_longest_match_wildcards_and_percent_decoding() -> None:
    body = (
        "User-agent: GPTBot\nDisallow: /p/\nAllow: /p/open/\nDisallow: /*.png$\n"
        "Disallow: /~u/\nSitemap: http://x/s.xml\nDisallow: /%E6%97%A5/\n"
        "\nUser-agent: Applebot\nDisallow: /\n"
    )
    rules = parse_rules(body)
    check = {
        "/p/x.jpg": ["GPTBot"],
        "/p/open/x.jpg": [],
        "/a.png": ["GPTBot"],
        "/a.png?x=1": [],
        "/%7Eu/a.jpg": ["GPTBot"],
        "/%E6%97%A5/a": ["GPTBot"],
        "/q": [],
    }
    for path, want in check.items():
        assert disallowed_agents(rules, path, ["GPTBot", "Applebot-Extended"]) == want, path


def test_a_truncated_body_drops_its_unfinished_last_line() -> None:
    body = "User-agent: GPTBot\nDisallow: /\nAllow: /im"
    assert disallowed_agents(parse_rules(body), "/imgs-private/a.jpg", ["GPTBot"]) == []
    cut = parse_rules(body, truncated=True)
    assert disallowed_agents(cut, "/imgs-private/a.jpg", ["GPTBot"]) == ["GPTBot"]


def _big_robots() -> bytes:
    # Disallow: / for GPTBot, padding, and "Allow: /imgs-public/" cut at "Allow: /im".
    head = "User-agent: GPTBot\nDisallow: /\n"
    pad_len = MAX_BYTES - len(head) - len("Allow: /im")
    pad = ("# padding " + "x" * 80 + "\n") * (pad_len // 91 + 1)
    pad = pad[: pad_len - 1] + "\n"
    return (head + pad + "Allow: /imgs-public/\n" + "# more\n" * 1000).encode()


def test_robots_cut_at_the_read_limit_keeps_its_opt_out(tmp_path: Path) -> None:
    routes: dict[str, Route] = {"/robots.txt": (200, _big_robots(), {})}
    with serve(routes) as (origin, _):
        fetch_origins([origin], tmp_path, FetchConfig(rate_per_host=1000, http=FAST))
    entry = read_entry(tmp_path, origin)
    assert entry is not None
    rec = entry["files"]["robots"]
    assert rec["truncated"] is True and not rec["body"].endswith("Allow: /im")
    stage = OptoutStage()
    stage.cache = tmp_path
    cols = stage.sample_columns(Sample(id="a", image=None, url=origin + "/imgs-private/a.jpg"))
    assert (cols["optout_robots"], cols["optout_robots_agents"]) == ("disallowed", "GPTBot")
    # A cache written before the fix (partial line kept) reads the same way.
    rec["body"] += "Allow: /im"
    write_entry(tmp_path, entry)
    stage = OptoutStage()
    stage.cache = tmp_path
    cols = stage.sample_columns(Sample(id="a", image=None, url=origin + "/imgs-private/a.jpg"))
    assert cols["optout_robots"] == "disallowed"


def test_stale_cache_entries_read_as_unknown_and_are_counted(tmp_path: Path) -> None:
    routes: dict[str, Route] = {"/robots.txt": (200, "User-agent: GPTBot\nDisallow: /\n", {})}
    with serve(routes) as (fresh, _), serve(routes) as (old, _):
        fetch_origins([fresh, old], tmp_path, FetchConfig(rate_per_host=1000, http=FAST))
    entry = read_entry(tmp_path, old)
    assert entry is not None
    entry["fetched_at"] -= 30 * 86400  # a month old: past any TTL
    write_entry(tmp_path, entry)
    (tmp_path / "notes.json").write_text('{"not": "an entry"}')
    stage = OptoutStage()
    stage.cache = tmp_path
    for origin, want in ((fresh, "disallowed"), (old, "unknown")):
        cols = stage.sample_columns(Sample(id="a", image=None, url=origin + "/a.jpg"))
        assert cols["optout_robots"] == want, origin
        assert cols["optout_aitxt"] in ("allowed", "unknown")
    cols = stage.sample_columns(Sample(id="b", image=None, url=old + "/a.jpg"))
    assert (cols["optout_aitxt"], cols["optout_tdmrep"]) == ("unknown", "unknown")
    prov = stage.provenance()
    assert prov["cached_origins"] == 2 and prov["stale_origins"] == 1
    assert prov["oldest_fetch"] < prov["newest_fetch"]
    assert prov["stale_entries"] == "unknown"


def _tdm_columns(cache: Path, origin: str, path: str) -> tuple[str | None, str | None]:
    stage = OptoutStage()
    stage.cache = cache
    cols = stage.sample_columns(Sample(id="t", image=None, url=origin + path))
    return cols["optout_tdmrep"], cols["optout_tdmrep_source"]


def test_tdmrep_entries_past_the_limit_make_unmatched_paths_unknown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import clipaudit.optout.tdmrep as tdmrep

    assert len(tdmrep.parse_tdmrep(json.dumps([{"location": "/x/"}] * 1200)) or []) == 1200
    monkeypatch.setattr(tdmrep, "MAX_ENTRIES", 3)
    body = [{"location": f"/p{i}/", "tdm-reservation": 0} for i in range(3)]
    body.append({"location": "/", "tdm-reservation": 1})  # dropped: past the limit
    routes: dict[str, Route] = {"/.well-known/tdmrep.json": (200, json.dumps(body), {})}
    with serve(routes) as (origin, _):
        fetch_origins([origin], tmp_path, FetchConfig(rate_per_host=1000, http=FAST))
    entry = read_entry(tmp_path, origin)
    assert entry is not None and entry["files"]["tdmrep"]["entries_dropped"] == 1
    assert _tdm_columns(tmp_path, origin, "/p1/a.jpg") == ("allowed", "file")  # kept entry
    assert _tdm_columns(tmp_path, origin, "/zzz/a.jpg") == ("unknown", None)  # not "allowed"


def test_tdmrep_cut_at_the_read_limit_is_unknown(tmp_path: Path) -> None:
    body = [{"location": f"/p{i}/", "tdm-reservation": 0} for i in range(20_000)]
    body.append({"location": "/", "tdm-reservation": 1})
    text = json.dumps(body)
    assert len(text) > MAX_BYTES
    routes: dict[str, Route] = {"/.well-known/tdmrep.json": (200, text, {})}
    with serve(routes) as (origin, _):
        fetch_origins([origin], tmp_path, FetchConfig(rate_per_host=1000, http=FAST))
    entry = read_entry(tmp_path, origin)
    assert entry is not None and entry["files"]["tdmrep"]["truncated"] is True
    assert _tdm_columns(tmp_path, origin, "/zzz/a.jpg") == ("unknown", None)


@pytest.mark.parametrize(
    ("location", "path", "reserved"),
    [
        ("/~u/*", "/%7Eu/a.jpg", 1),
        ("/~u/*", "/%7eu/a.jpg", 1),
        ("/%7Eu/*", "/~u/a.jpg", 1),
        ("/日/*", "/%E6%97%A5/a.jpg", 1),
        ("/%e6%97%a5/", "/日/a.jpg", 1),
        ("/a%2Fb", "/a/b", None),  # an encoded "/" is not a path separator
        ("/a%2fb", "/a%2Fb", 1),
    ],
)
def test_tdmrep_locations_match_percent_normalised(
    location: str, path: str, reserved: int | None
) -> None:
    entries = parse_tdmrep(json.dumps([{"location": location, "tdm-reservation": 1}]))
    assert resolve(entries, path).reservation == reserved


def test_tdmrep_wildcards_match_as_a_regex_would_in_linear_time() -> None:
    """Locations were matched as ``.*``-joined regular expressions, which backtrack
    exponentially: a server's ``/*a*a*…*b`` held curate for minutes on one path. The
    matcher gives the regular expression's answers (checked on random patterns) and
    answers the hostile pattern at once."""
    import random
    import re
    import time

    from clipaudit.optout.tdmrep import _matches, _pattern

    rng = random.Random(5)
    for _ in range(3000):
        loc = "/" + "".join(rng.choice("ab*/") for _ in range(rng.randint(0, 8)))
        loc += "$" if rng.random() < 0.3 else ""
        path = "/" + "".join(rng.choice("ab/") for _ in range(rng.randint(0, 10)))
        anchored = loc.endswith("$")
        body = loc[:-1] if anchored else loc
        regex = ".*".join(re.escape(p) for p in body.split("*")) + ("$" if anchored else "")
        assert _matches(*_pattern(loc), path) == bool(re.match(regex, path, re.S)), (loc, path)
    hostile = json.dumps([{"location": "/" + "*a" * 30 + "*b", "tdm-reservation": 1}])
    start = time.perf_counter()
    assert resolve(parse_tdmrep(hostile), "/" + "a" * 5000).reservation is None
    assert time.perf_counter() - start < 5.0  # the regex: hours
