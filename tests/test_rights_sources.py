"""Sources and licences: eTLD+1 of tricky urls (offline, no cache writes), domain lists,
licence strings to SPDX-like ids, and the pack sections' validation."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from clipaudit.errors import ClipauditError
from clipaudit.rights import sources
from clipaudit.rights.licences import LICENCE_PARSERS, parse_licence
from clipaudit.rights.sources import match_domain, url_parts
from clipaudit.rules.schema import load_pack
from clipaudit.world.pool import STOCK_DOMAINS


@pytest.mark.parametrize(
    ("url", "host", "domain"),
    [
        ("https://static.news.example.co.uk/a.jpg", "static.news.example.co.uk", "example.co.uk"),
        ("http://user:pw@WWW.Shutterstock.com:8080/x", "www.shutterstock.com", "shutterstock.com"),
        ("https://a.b.co.uk./trailing-dot", "a.b.co.uk", "b.co.uk"),
        ("https://www.gov.uk/x", "www.gov.uk", "www.gov.uk"),  # gov.uk is a public suffix
        ("https://foo.blogspot.com/x", "foo.blogspot.com", "blogspot.com"),  # ICANN part only
        ("http://192.168.0.1:8000/a", "192.168.0.1", "192.168.0.1"),
        ("http://[2001:db8::1]/a", "2001:db8::1", "2001:db8::1"),
        ("https://xn--mnchen-3ya.de/a", "xn--mnchen-3ya.de", "xn--mnchen-3ya.de"),
        ("https://MÜNCHEN.de/x", "xn--mnchen-3ya.de", "xn--mnchen-3ya.de"),
        ("//cdn.gettyimages.co.uk/x", "cdn.gettyimages.co.uk", "gettyimages.co.uk"),
        ("www.alamy.com/pic.jpg", "www.alamy.com", "alamy.com"),
        ("https://c8.alamy.com/x.jpg?u=http://evil.com", "c8.alamy.com", "alamy.com"),
        ("http://localhost/x", "localhost", None),
        ("garbage", "garbage", None),
        ("http://exa mple.com/", None, None),
        ("http://a.com:99999/", None, None),
        ("http://[zz/", None, None),
        ("http://@/x", None, None),
        ("", None, None),
        (None, None, None),
        ("https://" + "a" * 3000 + ".com/", None, None),
    ],
)
def test_etld_plus_one(url: str | None, host: str | None, domain: str | None) -> None:
    got = url_parts(url)
    assert (got.host, got.domain) == (host, domain)


def test_normalised_url_for_block_lists() -> None:
    assert url_parts("HTTPS://Example.COM:443/A?b=1#frag").url == "https://example.com/A?b=1"
    assert url_parts("http://example.com:8080").url == "http://example.com:8080/"


def test_suffix_list_is_the_bundled_snapshot_offline_without_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for var in ("HOME", "XDG_CACHE_HOME", "TLDEXTRACT_CACHE"):
        monkeypatch.setenv(var, str(tmp_path))

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("tldextract tried the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    sources._extractor.cache_clear()
    try:
        assert url_parts("https://x.y.example.com.au/p").domain == "example.com.au"
    finally:
        sources._extractor.cache_clear()
    assert list(tmp_path.rglob("*")) == []  # nothing cached anywhere we pointed it


def test_domain_lists_match_labels_and_hosts() -> None:
    entries = ["gettyimages", "stock.adobe.com", "alamy.com"]
    cases = {
        "https://media.gettyimages.com/x": "gettyimages",
        "https://www.gettyimages.co.uk/x": "gettyimages",
        "https://stock.adobe.com/x": "stock.adobe.com",
        "https://eu.stock.adobe.com/x": "stock.adobe.com",
        "https://www.adobe.com/x": None,
        "https://c8.alamy.com/x": "alamy.com",
        "https://gettyimages.example.com/x": None,  # a subdomain label is not the brand
        "https://evil.com/gettyimages.com": None,
        "https://alamy.com.evil.net/": None,
        "http://10.0.0.1/": None,
    }
    for url, expected in cases.items():
        assert match_domain(url_parts(url), entries) == expected, url


def test_default_pack_lists_cover_the_world_pool_stock_domains() -> None:
    pack = load_pack("default")
    for host in STOCK_DOMAINS:
        assert match_domain(url_parts(f"https://{host}/i.jpg"), pack.sources.stock_domains)
    for host in ("www.reuters.com", "apnews.com", "www.afp.com"):
        assert match_domain(url_parts(f"https://{host}/i.jpg"), pack.sources.news_domains)
    assert not match_domain(
        url_parts("https://static.news.example.co.uk/i.jpg"),
        pack.sources.stock_domains + pack.sources.news_domains,
    )


LICENCES = [
    ("https://creativecommons.org/licenses/by-nc-nd/4.0/", "CC-BY-NC-ND-4.0", True, True, False),
    ("https://creativecommons.org/licenses/by-nc/4.0/", "CC-BY-NC-4.0", True, False, False),
    ("http://creativecommons.org/licenses/by/2.0/deed.en", "CC-BY-2.0", False, False, False),
    ("https://creativecommons.org/licenses/by-sa/4.0/", "CC-BY-SA-4.0", False, False, True),
    ("creativecommons.org/licenses/by-nd-nc/2.0", "CC-BY-NC-ND-2.0", True, True, False),
    ("https://creativecommons.org/publicdomain/zero/1.0/", "CC0-1.0", False, False, False),
    ("https://creativecommons.org/publicdomain/mark/1.0/", "CC-PDM-1.0", False, False, False),
    ("CC BY-SA 4.0", "CC-BY-SA-4.0", False, False, True),
    ("CC-BY-4.0", "CC-BY-4.0", False, False, False),
    ("cc-by-nc", "CC-BY-NC", True, False, False),
    ("CC_BY_NC_ND 3.0", "CC-BY-NC-ND-3.0", True, True, False),
    ("licensed under CC BY-NC 2.0 by a Flickr user", "CC-BY-NC-2.0", True, False, False),
    (
        "Attribution-NonCommercial-ShareAlike 4.0 International",
        "CC-BY-NC-SA-4.0",
        True,
        False,
        True,
    ),
    ("Attribution-NoDerivs 3.0 Unported", "CC-BY-ND-3.0", False, True, False),
    ("cc0", "CC0-1.0", False, False, False),
    ("CC0 1.0 Universal", "CC0-1.0", False, False, False),
    ("public domain", "LicenseRef-PublicDomain", False, False, False),
    ("MIT", "MIT", False, False, False),
    ("All rights reserved", "LicenseRef-AllRightsReserved", False, False, False),
]


@pytest.mark.parametrize(("text", "ident", "nc", "nd", "sa"), LICENCES)
def test_licence_strings(text: str, ident: str, nc: bool, nd: bool, sa: bool) -> None:
    got = parse_licence(text)
    assert got is not None
    assert (got.id, got.nc, got.nd, got.sa) == (ident, nc, nd, sa)


@pytest.mark.parametrize(
    "text",
    ["", None, "random words", "Attribution required", "cc by nd sa", "see website", "x" * 10_000],
)
def test_unrecognised_licences_are_none(text: str | None) -> None:
    assert parse_licence(text) is None


def test_licence_parsers_are_a_registry() -> None:
    assert list(LICENCE_PARSERS)[:2] == ["cc_url", "cc_short"]  # most specific first


def write_pack(tmp_path: Path, body: str) -> str:
    p = tmp_path / "p.yaml"
    p.write_text("name: t\nextends: default\n" + body, encoding="utf-8")
    return str(p)


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ("sources:\n  stock_domains: ['https://x.com/a']\n", "is not a domain"),
        ("sources:\n  block_sha256: ['abc']\n", "is not a sha256"),
        ("sources:\n  block_urls: ['example.com/x']\n", "is not a url"),
        ("rights:\n  notice_fields: [copyrite]\n", "notice_fields"),
        ("rights:\n  data_minning: []\n", "unknown field"),
    ],
)
def test_pack_mistakes_are_one_sentence(tmp_path: Path, body: str, needle: str) -> None:
    with pytest.raises(ClipauditError, match=needle) as err:
        load_pack(write_pack(tmp_path, body))
    assert "\n" not in str(err.value)


def test_pack_values_are_normalised(tmp_path: Path) -> None:
    pack = load_pack(
        write_pack(
            tmp_path,
            "rights:\n  data_mining_optout: ['http://ns.useplus.org/ldf/vocab/DMI-PROHIBITED']\n"
            "  training_entries: [cawg.ai_training]\n"
            "sources:\n  block_domains: ['Bad.Example.COM.', 'münchen.de']\n"
            f"  block_sha256: ['{'AB' * 32}']\n"
            "  block_urls: ['HTTPS://Example.com:443/a#x']\n",
        )
    )
    assert pack.rights.data_mining_optout == ["PROHIBITED"]
    assert pack.rights.training_entries == ["ai_training"]
    assert pack.sources.block_domains == ["bad.example.com", "xn--mnchen-3ya.de"]
    assert pack.sources.block_sha256 == ["ab" * 32]
    assert pack.sources.block_urls == ["https://example.com/a"]
