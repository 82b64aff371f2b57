"""Opt-out protocol rules without a network: robots.txt and ai.txt wildcards, TDMRep
first-match-wins and overrides, X-Robots-Tag as img2dataset reads it, HTML meta, the pack."""

from __future__ import annotations

from pathlib import Path

import pytest

from clipaudit.errors import ClipauditError
from clipaudit.optout.agents import DEFAULT_AGENTS, DEFAULT_HEADER_DIRECTIVES, parse_agents
from clipaudit.optout.headers import header_values, matching_directive, parse_directives
from clipaudit.optout.html_meta import html_metas, meta_robots_values, meta_value
from clipaudit.optout.robots import disallowed_agents, parse_rules
from clipaudit.optout.tdmrep import Reservation, match_entry, parse_tdmrep, resolve
from clipaudit.rules.schema import load_pack

ROBOTS = """
User-agent: GPTBot
Disallow: /private/
Disallow: /*.png$
Allow: /private/open/

User-agent: CCBot
Disallow: /

User-agent: *
Disallow: /tmp/
"""


@pytest.mark.parametrize(
    ("path", "denied"),
    [
        ("/", ["CCBot"]),
        ("/private/a.jpg", ["GPTBot", "CCBot"]),
        ("/private/open/a.jpg", ["CCBot"]),  # the longer Allow wins
        ("/img/a.png", ["GPTBot", "CCBot"]),
        ("/img/a.png?size=2", ["CCBot"]),  # "$" anchors: a query makes it not end in .png
        ("/img/a.pngx", ["CCBot"]),
        ("/tmp/x", ["CCBot", "ClaudeBot"]),  # agents without a group fall back to "*"
    ],
)
def test_robots_groups_and_wildcards(path: str, denied: list[str]) -> None:
    rules = parse_rules(ROBOTS)
    assert disallowed_agents(rules, path, ["GPTBot", "CCBot", "ClaudeBot"]) == denied


def test_garbage_robots_allows_everything() -> None:
    rules = parse_rules("\x00\xff<html><body>Disallow everything!</body></html>\n{}[]")
    assert disallowed_agents(rules, "/a.jpg", DEFAULT_AGENTS) == []


def test_aitxt_extension_rules() -> None:
    body = "# Spawning AI\nUser-Agent: *\nDisallow: *.jpg\nDisallow: .png\nAllow: /\n"
    rules = parse_rules(body, aitxt=True)
    assert disallowed_agents(rules, "/a/b.jpg", ["GPTBot"]) == ["GPTBot"]
    assert disallowed_agents(rules, "/a/b.png", ["GPTBot"]) == ["GPTBot"]
    assert disallowed_agents(rules, "/a/b.gif", ["GPTBot"]) == []
    # In a robots.txt a bare ".png" is not a pattern at all.
    assert disallowed_agents(parse_rules(body), "/a/b.png", ["GPTBot"]) == []


TDM = """[
  {"location": "/open/reserved.jpg", "tdm-reservation": 1},
  {"location": "/open/*", "tdm-reservation": 0},
  {"location": "*.tif$", "tdm-reservation": 1, "tdm-policy": "https://ex.org/policy"},
  {"location": "/odd/", "tdm-reservation": 2},
  {"location": "/odd/", "tdm-reservation": 1},
  {"location": "/str/", "tdm-reservation": "1"},
  {"location": "/bool/", "tdm-reservation": true},
  {"location": "/", "tdm-reservation": 1}
]"""


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/open/reserved.jpg", Reservation(1, None, "file")),  # first match wins
        ("/open/x.jpg", Reservation(0, None, "file")),
        ("/a/b.tif", Reservation(1, "https://ex.org/policy", "file")),
        ("/a/b.tif?x", Reservation(1, None, "file")),  # "$" fails, "/" matches last
        ("/odd/x", Reservation(None, None, None)),  # 2 is a protocol error: unset
        ("/str/x", Reservation(None, None, None)),  # a JSON string is not 0/1
        ("/bool/x", Reservation(None, None, None)),
        ("/other", Reservation(1, None, "file")),
    ],
)
def test_tdmrep_first_match_wins(path: str, expected: Reservation) -> None:
    entries = parse_tdmrep(TDM)
    assert entries is not None and len(entries) == 8
    assert resolve(entries, path) == expected


@pytest.mark.parametrize("body", ["{not json", '{"location": "/"}', "", "null", '"x"'])
def test_malformed_tdmrep_reads_as_no_declaration(body: str) -> None:
    assert parse_tdmrep(body) is None
    assert resolve(parse_tdmrep(body), "/x") == Reservation(None, None, None)


def test_tdmrep_entries_of_the_wrong_shape_are_skipped() -> None:
    entries = parse_tdmrep(
        '[1, "x", {"tdm-reservation": 1}, {"location": "/a", "tdm-reservation": 1}]'
    )
    assert entries == [{"location": "/a", "reservation": 1, "policy": None}]
    assert match_entry(entries, "/b") is None


def test_tdmrep_header_overrides_file_and_meta_overrides_header() -> None:
    entries = parse_tdmrep('[{"location": "/", "tdm-reservation": 1}]')
    assert resolve(entries, "/x", header="0") == Reservation(0, None, "header")
    assert resolve(entries, "/x", header="0", meta="1", meta_policy="https://m/p") == Reservation(
        1, "https://m/p", "meta"
    )
    assert resolve(None, "/x", header=" 1 ", header_policy="https://h/p") == Reservation(
        1, "https://h/p", "header"
    )
    # An invalid header value is a protocol error: unset, so the file still decides.
    assert resolve(entries, "/x", header="yes") == Reservation(1, None, "file")
    assert resolve(entries, "/x", header="0", meta="maybe") == Reservation(0, None, "header")


@pytest.mark.parametrize(
    ("values", "directives"),
    [
        (["noai"], ["noai"]),
        (["noai, noimageai"], ["noai", "noimageai"]),
        (["NoImageAI"], ["noimageai"]),
        (["GPTBot: noai"], ["gptbot:noai"]),
        (["googlebot: noindex, nofollow"], []),  # scoped to an agent we do not speak for
        (
            ["noarchive", "gptbot: noimageai, noindex"],
            ["noarchive", "gptbot:noimageai", "gptbot:noindex"],
        ),
        (["unavailable_after: 25 Jun 2030 15:00:00 PST, noai"], ["noai"]),
        (["max-image-preview: large"], []),
        (["noai, ccbot: noindex"], ["noai", "ccbot:noindex"]),
        (["<script>, ../../x, no ai"], []),
    ],
)
def test_xrobots_directives(values: list[str], directives: list[str]) -> None:
    assert parse_directives(values, DEFAULT_AGENTS) == directives


def test_xrobots_matching_follows_img2dataset() -> None:
    counted, ours = DEFAULT_HEADER_DIRECTIVES, DEFAULT_AGENTS
    assert matching_directive(["noarchive", "noimageai"], counted, ours) == "noimageai"
    assert matching_directive(["gptbot:noai"], counted, ours) == "gptbot:noai"
    assert matching_directive(["gptbot:noai"], counted, ["CCBot"]) is None
    assert matching_directive(["noindex"], counted, ours) == "noindex"  # img2dataset default
    assert matching_directive(["noindex"], ["noai", "noimageai"], ours) is None
    assert matching_directive(["nofollow", "noarchive"], counted, ours) is None


def test_header_values_are_case_insensitive_and_repeatable() -> None:
    headers = {"X-Robots-Tag": ["noindex", "gptbot: noai"], "x-robots-tag ": "noimageai"}
    assert header_values(headers, "x-robots-tag") == ["noindex", "gptbot: noai", "noimageai"]
    pairs = [["X-ROBOTS-TAG", "noai"], ["content-type", "image/png"], "junk", ["a"]]
    assert header_values(pairs, "x-robots-tag") == ["noai"]
    assert header_values({"tdm-reservation": 1}, "TDM-Reservation") == ["1"]
    for bad in (None, "noai", 3, {"x-robots-tag": {"a": 1}}, {5: "noai"}):
        assert header_values(bad, "x-robots-tag") == []


def test_html_meta_equivalents() -> None:
    html = (
        "<html><head><meta name='Robots' content='noindex, NoAI'>"
        '<meta name="GPTBot" content="noimageai"><meta name="googlebot" content="noai">'
        '<meta name="description" content="a cat"><meta name="tdm-reservation" content="1">'
        '<meta name="tdm-policy" content="https://ex.org/tdm"></head><body><p>hi</body>'
    )
    metas = html_metas(html)
    values = meta_robots_values(metas, list(DEFAULT_AGENTS))
    assert values == ["noindex, NoAI", "gptbot: noimageai"]
    assert parse_directives(values, DEFAULT_AGENTS) == ["noindex", "noai", "gptbot:noimageai"]
    assert meta_value(metas, "tdm-reservation") == "1"
    assert meta_value(metas, "tdm-policy") == "https://ex.org/tdm"
    for broken in ("<meta name=robots content=noai", "<!DOCTYPE<<<<meta", "\x00" * 50, None, 7):
        html_metas(broken)  # never raises
    assert html_metas('<meta name="robots" content="noai"><![CDATA[') == [("robots", "noai")]


def test_agent_list_parsing() -> None:
    assert parse_agents(None) == DEFAULT_AGENTS
    assert parse_agents("GPTBot, ccbot,GPTBOT") == ("GPTBot", "ccbot")
    with pytest.raises(ClipauditError, match="'bad agent'"):
        parse_agents("GPTBot,bad agent")


def _pack(tmp_path: Path, body: str) -> Path:
    p = tmp_path / "p.yaml"
    p.write_text("name: p\nextends: default\n" + body)
    return p


def test_pack_section_is_strict_and_validated(tmp_path: Path) -> None:
    pack = load_pack(
        str(_pack(tmp_path, "optout:\n  agents: [GPTBot]\n  header_directives: [NOAI]\n"))
    )
    assert pack.optout.agents == ["GPTBot"] and pack.optout.header_directives == ["noai"]
    assert pack.optout.unknown_protocols == ["robots", "aitxt", "tdmrep"]
    with pytest.raises(ClipauditError, match=r"unknown field 'optout.agent'.*agents"):
        load_pack(str(_pack(tmp_path, "optout:\n  agent: [GPTBot]\n")))
    with pytest.raises(ClipauditError, match="'GPT Bot' is not a user-agent product token"):
        load_pack(str(_pack(tmp_path, "optout:\n  agents: [GPT Bot]\n")))
    with pytest.raises(ClipauditError, match=r"optout.protocols"):
        load_pack(str(_pack(tmp_path, "optout:\n  protocols: [robots, c2pa]\n")))
    ok = load_pack(str(_pack(tmp_path, "actions:\n  optout_unknown: flag\n  optout_aitxt: drop\n")))
    assert ok.action("optout_unknown") == "flag"
