"""The opt-out fetcher against servers started on 127.0.0.1: RFC 9309 status codes,
redirects, size cap, timeouts and deadlines, rate limit, concurrency bound and the cache."""

from __future__ import annotations

import base64
import gzip
import itertools
import json
import re
import time
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest

from clipaudit.errors import ClipauditError
from clipaudit.optout import USER_AGENT, FetchConfig, HttpSettings, http_get, read_entry
from clipaudit.optout.cache import cache_path
from clipaudit.optout.fetch import fetch_origins
from clipaudit.optout.http_get import MAX_BYTES, HostRateLimiter
from clipaudit.optout.origin import cache_name, origin_of
from tests.test_optout_support import (
    Log,
    Route,
    endless,
    forward_proxy,
    refused_origin,
    reset,
    serve,
    stall,
    stall_body,
    trickle_headers,
)

FAST = HttpSettings(timeout=0.5, deadline=1.0)
ROBOTS = "User-agent: GPTBot\nDisallow: /\n\nUser-agent: *\nDisallow: /private/\n"


def fetch_one(origin: str, tmp: Path, **kw: object) -> dict:
    cfg = FetchConfig(rate_per_host=1000, http=FAST, **kw)  # type: ignore[arg-type]
    fetch_origins([origin], tmp, cfg)
    entry = read_entry(tmp, origin)
    assert entry is not None
    return entry["files"]


def test_2xx_is_parsed_and_we_say_who_we_are(tmp_path: Path) -> None:
    tdm = '[{"location": "/", "tdm-reservation": 1, "tdm-policy": "https://p.example/pol"}]'
    routes: dict[str, Route] = {
        "/robots.txt": (200, ROBOTS, {}),
        "/ai.txt": (200, "User-Agent: *\nDisallow: *.jpg\n", {}),
        "/.well-known/tdmrep.json": (200, tdm, {"Content-Type": "application/json"}),
    }
    with serve(routes) as (origin, log):
        files = fetch_one(origin, tmp_path)
    assert sorted(p for _, p, _ in log.requests) == [
        "/.well-known/tdmrep.json",
        "/ai.txt",
        "/robots.txt",
    ]
    assert {ua for _, _, ua in log.requests} == {USER_AGENT}
    assert re.fullmatch(r"clipaudit-optout/\d+\.\d+\.\d+.*", USER_AGENT)
    r = files["robots"]
    assert (r["status"], r["outcome"], r["body"]) == (200, "fetched", ROBOTS)
    assert r["root"]["GPTBot"] == "disallowed" and r["root"]["CCBot"] == "allowed"
    assert files["aitxt"]["root"]["CCBot"] == "allowed"  # "/" is not a .jpg
    assert files["tdmrep"]["entries"] == [
        {"location": "/", "reservation": 1, "policy": "https://p.example/pol"}
    ]


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (404, "unavailable"),
        (403, "unavailable"),
        (401, "unavailable"),
        (410, "unavailable"),
        (429, "unreachable"),
        (407, "unreachable"),  # a proxy wanting credentials: the origin was never asked
        (500, "unreachable"),
        (503, "unreachable"),
    ],
)
def test_status_codes_follow_rfc_9309(tmp_path: Path, status: int, outcome: str) -> None:
    routes: dict[str, Route] = {
        p: (status, "User-agent: *\nDisallow: /\n", {}) for p in ("/robots.txt", "/ai.txt")
    }
    with serve(routes) as (origin, _):
        files = fetch_one(origin, tmp_path)
    assert files["robots"]["status"] == status
    assert files["robots"]["outcome"] == outcome
    assert "body" not in files["robots"]  # an error page is never read as rules


def test_connection_refused_is_unreachable_at_once() -> None:
    t0 = time.monotonic()
    got = http_get(refused_origin() + "/robots.txt", FAST)
    assert got.outcome == "unreachable" and got.status is None
    assert "ConnectionRefused" in (got.error or "")
    assert time.monotonic() - t0 < 2.0  # refused at once (generous bound for loaded CI)


def _chain(n: int, final: str = "/robots.txt.final") -> dict:
    routes: dict = {}
    hops = ["/robots.txt"] + [f"/hop{i}" for i in range(1, n)]
    for i, hop in enumerate(hops):
        nxt = hops[i + 1] if i + 1 < len(hops) else final
        routes[hop] = (301 if i % 2 else 302, "", {"Location": nxt})
    routes[final] = (200, ROBOTS, {})
    return routes


def test_five_redirects_are_followed() -> None:
    with serve(_chain(5)) as (origin, log):
        got = http_get(origin + "/robots.txt", FAST)
    assert (got.outcome, got.status, len(got.redirects)) == ("fetched", 200, 5)
    assert got.final_url == origin + "/robots.txt.final"
    assert got.body.decode() == ROBOTS
    assert len(log.requests) == 6


def test_six_redirects_and_loops_are_unreachable() -> None:
    with serve(_chain(6)) as (origin, log):
        got = http_get(origin + "/robots.txt", FAST)
    assert got.outcome == "unreachable" and "more than 5 redirects" in (got.error or "")
    assert len(log.requests) == 6  # the sixth redirect is not followed
    loop = {
        "/robots.txt": (301, "", {"Location": "/b"}),
        "/b": (302, "", {"Location": "/robots.txt"}),
    }
    t0 = time.monotonic()
    with serve(loop) as (origin, log):
        got = http_get(origin + "/robots.txt", FAST)
    assert got.outcome == "unreachable" and len(log.requests) == 6
    assert time.monotonic() - t0 < 3.0


@pytest.mark.parametrize(
    "target", ["file:///etc/passwd", "ftp://127.0.0.1/robots.txt", "javascript:alert(1)"]
)
def test_redirect_to_other_schemes_is_refused(target: str) -> None:
    with serve({"/robots.txt": (302, "", {"Location": target})}) as (origin, log):
        got = http_get(origin + "/robots.txt", FAST)
    assert got.outcome == "unreachable" and "non-http(s)" in (got.error or "")
    assert got.body == b"" and len(log.requests) == 1


def test_a_relative_redirect_to_another_origin_is_followed() -> None:
    with (
        serve({"/robots.txt": (200, ROBOTS, {})}) as (other, _),
        serve({"/robots.txt": (308, "", {"Location": other + "/robots.txt"})}) as (o, _),
    ):
        got = http_get(o + "/robots.txt", FAST)
    assert got.outcome == "fetched" and got.final_url == other + "/robots.txt"


def test_a_public_origins_redirect_to_an_internal_address_is_not_followed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Dataset urls are untrusted: a public origin's redirect reached an internal service
    (a metadata endpoint, a secrets page) and its reply was stored in the cache. Here the
    first server stands for a public origin (its port is told to count as public); a
    redirect between internal addresses, as in every other test here, is followed."""
    import importlib

    hg = importlib.import_module("clipaudit.optout.http_get")  # the module, not the function
    secret = {"/latest/meta-data": (200, "AWS_SECRET_ACCESS_KEY=wJalr", {})}
    with serve(secret) as (internal, inner_log):
        hop = {"/robots.txt": (302, "", {"Location": internal + "/latest/meta-data"})}
        with serve(hop) as (public, _):
            public_port = int(public.rsplit(":", 1)[1])
            inside = hg._internal
            monkeypatch.setattr(hg, "_internal", lambda p: p[1] != public_port and inside(p))
            got = http_get(public + "/robots.txt", FAST)
            assert got.outcome == "unreachable" and got.body == b""
            said = "redirect from a public origin to the internal address 127.0.0.1"
            assert said in (got.error or "")
            assert inner_log.requests == []  # connected, never asked
            monkeypatch.setattr(hg, "_internal", inside)
            assert http_get(public + "/robots.txt", FAST).outcome == "fetched"


def test_an_endless_fast_body_is_cut_at_the_size_cap(tmp_path: Path) -> None:
    # RFC 9309: parse at least 500 KiB; a body that never ends is read that far, no further.
    head = b"User-agent: GPTBot\nDisallow: /\n"
    routes: dict[str, Route] = {"/robots.txt": endless(head + b"# filler " * 1000)}
    t0 = time.monotonic()
    with serve(routes) as (origin, _):
        files = fetch_one(origin, tmp_path)
    elapsed = time.monotonic() - t0
    r = files["robots"]
    assert r["outcome"] == "fetched" and r["truncated"] is True
    assert r["bytes"] == MAX_BYTES >= 500 * 1024
    assert r["root"]["GPTBot"] == "disallowed"
    assert elapsed < 5.0


@pytest.mark.parametrize(
    "route",
    [stall, stall_body, reset, trickle_headers, endless(b"#", pause=0.01)],
    ids=["stall", "stall-after-headers", "reset", "trickle-headers", "trickle-body"],
)
def test_misbehaving_servers_end_in_bounded_time_as_unreachable(route: object) -> None:
    # Per-read timeout 5 s but deadline 1 s: tricklers never trip the read timeout, so only
    # the deadline watchdog can stop them (the bound below leaves room for a loaded machine).
    settings = HttpSettings(timeout=5.0, deadline=1.0)
    with serve({"/robots.txt": route}) as (origin, _):  # type: ignore[dict-item]
        t0 = time.monotonic()
        got = http_get(origin + "/robots.txt", settings)
        elapsed = time.monotonic() - t0
    assert got.outcome == "unreachable" and got.body == b""
    assert elapsed < 3.0
    if route is not reset:
        assert "deadline" in (got.error or ""), got.error
        assert elapsed >= 0.95


def test_read_timeout_fires_before_the_deadline() -> None:
    with serve({"/robots.txt": stall}) as (origin, _):
        t0 = time.monotonic()
        got = http_get(origin + "/robots.txt", HttpSettings(timeout=0.3, deadline=5.0))
        elapsed = time.monotonic() - t0
    assert got.outcome == "unreachable" and "timed out" in (got.error or "")
    assert 0.25 <= elapsed < 2.5


def test_rate_limit_per_host_spaces_requests(tmp_path: Path) -> None:
    with serve({"/robots.txt": (200, ROBOTS, {})}) as (origin, log):
        fetch_origins([origin], tmp_path, FetchConfig(concurrency=3, rate_per_host=5, http=FAST))
    times = sorted(t for t, _, _ in log.requests)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert len(times) == 3 and min(gaps) >= 0.19, gaps
    lim = HostRateLimiter(10)
    slots = [lim.reserve("a:1") for _ in range(3)] + [lim.reserve("b:1")]
    assert slots[1] - slots[0] == pytest.approx(0.1) and slots[2] - slots[1] == pytest.approx(0.1)
    assert slots[3] < slots[1]  # another host is not held back


def _raw_deflate(data: bytes) -> bytes:
    c = zlib.compressobj(wbits=-15)
    return c.compress(data) + c.flush()


@pytest.mark.parametrize(
    ("coding", "encode"),
    [("gzip", gzip.compress), ("x-gzip", gzip.compress), ("deflate", zlib.compress),
     ("deflate", _raw_deflate), ("GZip ", gzip.compress)],
    ids=["gzip", "x-gzip", "deflate-zlib", "deflate-raw", "case-and-space"],
)  # fmt: skip
def test_a_compressed_body_sent_unasked_is_decoded(
    tmp_path: Path, coding: str, encode: Callable[[bytes], bytes]
) -> None:
    # We ask for identity; a server that compresses anyway still has its rules read.
    body = encode(ROBOTS.encode())
    routes: dict[str, Route] = {"/robots.txt": (200, body, {"Content-Encoding": coding})}
    with serve(routes) as (origin, _):
        r = fetch_one(origin, tmp_path)["robots"]
    assert (r["outcome"], r["body"], r["truncated"]) == ("fetched", ROBOTS, False)
    assert r["root"]["GPTBot"] == "disallowed" and r["root"]["CCBot"] == "allowed"


@pytest.mark.parametrize(
    ("body", "encoding"),
    [
        (b"\xff\xfe" + ROBOTS.encode("utf-16-le"), "utf-16"),
        (b"\xfe\xff" + ROBOTS.encode("utf-16-be"), "utf-16"),
        (b"\xef\xbb\xbf" + ROBOTS.encode(), None),
    ],
)
def test_a_robots_txt_saved_with_a_byte_order_mark_keeps_its_rules(
    tmp_path: Path, body: bytes, encoding: str | None
) -> None:
    # RFC 9309 asks for UTF-8; a UTF-16 file read as UTF-8 would lose its Disallow lines.
    routes: dict[str, Route] = {"/robots.txt": (200, body, {})}
    with serve(routes) as (origin, _):
        r = fetch_one(origin, tmp_path)["robots"]
    assert (r["outcome"], r["body"], r.get("encoding")) == ("fetched", ROBOTS, encoding)
    assert r["root"]["GPTBot"] == "disallowed" and r["root"]["CCBot"] == "allowed"


def test_a_gzip_bomb_is_cut_at_the_size_cap(tmp_path: Path) -> None:
    head = b"User-agent: GPTBot\nDisallow: /\n"
    bomb = gzip.compress(head + b"#" * (64 * MAX_BYTES))  # 32 MiB of text in about 32 KiB
    assert len(bomb) < MAX_BYTES // 8
    routes: dict[str, Route] = {"/robots.txt": (200, bomb, {"Content-Encoding": "gzip"})}
    t0 = time.monotonic()
    with serve(routes) as (origin, _):
        r = fetch_one(origin, tmp_path)["robots"]
    assert r["outcome"] == "fetched" and r["truncated"] is True and r["bytes"] == MAX_BYTES
    assert r["root"]["GPTBot"] == "disallowed"
    assert time.monotonic() - t0 < 5.0


@pytest.mark.parametrize(
    ("coding", "body", "said"),
    [("br", b"\x1b\x00\x00", "content-encoding 'br' is not one we can read"),
     ("gzip, br", gzip.compress(b"x"), "content-encoding 'gzip, br'"),
     ("gzip", b"User-agent: *\nDisallow:\n", "the gzip body does not decode"),
     # A whole reply whose gzip stream stops before its end: it read as a complete file
     # that allowed the crawlers its missing last group disallows.
     ("gzip", gzip.compress(b"User-agent: *\nAllow: /\n\nUser-agent: GPTBot\n"
                            b"User-agent: CCBot\nDisallow: /\n")[:50], "cut short")],
    ids=["brotli", "two-codings", "not-gzip", "cut-short"],
)  # fmt: skip
def test_a_body_we_cannot_decode_is_unreachable(tmp_path: Path, coding: str, body: bytes,
                                                said: str) -> None:  # fmt: skip
    # Undecodable bytes read as text would hold no rules, i.e. allow all: disallow instead.
    routes: dict[str, Route] = {"/robots.txt": (200, body, {"Content-Encoding": coding})}
    with serve(routes) as (origin, _):
        r = fetch_one(origin, tmp_path)["robots"]
    assert r["outcome"] == "unreachable" and r["status"] == 200 and "body" not in r
    assert said in r["error"], r["error"]


def test_concurrency_is_bounded(tmp_path: Path) -> None:
    shared = Log()
    routes: dict[str, Route] = {"/robots.txt": (200, ROBOTS, {})}
    servers = [serve(routes, shared, delay=0.1) for _ in range(6)]
    origins = [s.__enter__()[0] for s in servers]
    try:
        t0 = time.monotonic()
        cfg = FetchConfig(concurrency=3, rate_per_host=1000, http=FAST)
        summary = fetch_origins(origins, tmp_path, cfg)
        elapsed = time.monotonic() - t0
    finally:
        for s in servers:
            s.__exit__(None, None, None)
    assert len(shared.requests) == 18 and shared.peak == 3
    assert elapsed >= 18 / 3 * 0.1 - 0.05
    assert summary["fetched"] == 6 and summary["outcomes"]["robots"] == {"fetched": 6}
    assert summary["outcomes"]["aitxt"] == {"unavailable": 6}


def test_cache_is_named_by_hash_fresh_entries_are_reused(tmp_path: Path) -> None:
    with serve({"/robots.txt": (200, ROBOTS, {})}) as (origin, log):
        cfg = FetchConfig(rate_per_host=1000, http=FAST, ttl_s=3600)
        first = fetch_origins([origin], tmp_path, cfg)
        again = fetch_origins([origin], tmp_path, cfg)
        n_after_second = len(log.requests)
        cfg.refresh = True
        fetch_origins([origin], tmp_path, cfg)
    assert (first["fetched"], again["fetched"], again["fresh"]) == (1, 0, 1)
    assert n_after_second == 3 and len(log.requests) == 6
    names = [p.name for p in tmp_path.iterdir()]
    assert names == [cache_name(origin)] and re.fullmatch(r"[0-9a-f]{64}\.json", names[0])
    entry = json.loads(cache_path(tmp_path, origin).read_text())
    assert entry["origin"] == origin and entry["ttl_s"] == 3600
    assert entry["user_agent"] == USER_AGENT and entry["fetched_at"] <= time.time()


def test_bad_settings_are_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ClipauditError, match=r"--ttl 90000 .*24 h"):
        fetch_origins([], tmp_path, FetchConfig(ttl_s=90000))
    with pytest.raises(ClipauditError, match="--concurrency 0"):
        fetch_origins([], tmp_path, FetchConfig(concurrency=0))


@pytest.mark.parametrize(
    ("url", "origin"),
    [
        ("https://Example.ORG/a/b.jpg", "https://example.org"),
        ("https://example.org:443/x", "https://example.org"),
        ("http://user:pw@example.org:8080/x", "http://example.org:8080"),
        ("https://bücher.example/x", "https://xn--bcher-kva.example"),
        ("http://[::1]:81/x", "http://[::1]:81"),
        ("https://../../etc/passwd", None),
        ("https://exa mple.org/", None),
        ("https://a/..%2f..%2fb/", "https://a"),
        ("file:///etc/passwd", None),
        ("https://example.org:99999/", None),
        ("not a url", None),
        (None, None),
    ],
)
def test_untrusted_urls_give_safe_origins(url: object, origin: str | None) -> None:
    assert origin_of(url) == origin


def test_malformed_files_are_read_safely(tmp_path: Path) -> None:
    routes: dict[str, Route] = {
        "/robots.txt": (200, b"\x00\xff\xfe<html>\nDisallow /\nUser-agent GPTBot\n\x89PNG", {}),
        "/ai.txt": (200, b"\xef\xbb\xbfUser-Agent: *\nDisallow: .jpg\n", {}),  # BOM, bare ext
        "/.well-known/tdmrep.json": (200, '[{"location": "/", "tdm-reservation": "yes"}]', {}),
    }
    with serve(routes) as (origin, _):
        files = fetch_one(origin, tmp_path)
    assert files["robots"]["outcome"] == "fetched"
    assert set(files["robots"]["root"].values()) == {"allowed"}  # nothing parseable: allow
    assert files["aitxt"]["body"].startswith("User-Agent")  # BOM removed
    assert files["tdmrep"]["outcome"] == "fetched"
    assert files["tdmrep"]["entries"] == [{"location": "/", "reservation": None, "policy": None}]


def test_cli_fetch_writes_the_cache_and_prints_a_summary(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from clipaudit.data import Sample, write_dataset
    from clipaudit.optout.cli import optout_app

    with serve({"/robots.txt": (200, ROBOTS, {})}) as (origin, _):
        samples = [
            Sample(f"s{i}", b"x", "a caption", f"{origin}/img/{i}.jpg", {}, "jpg") for i in range(3)
        ]
        write_dataset(samples, tmp_path / "d", "webdataset", 10)
        args = ["fetch", str(tmp_path / "d"), "--cache", str(tmp_path / "c"), "--json"]
        res = CliRunner().invoke(optout_app, [*args, "--rate-per-host", "100", "--timeout", "1"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert (summary["samples"], summary["origins"], summary["fetched"]) == (3, 1, 1)
    assert read_entry(tmp_path / "c", origin) is not None
    bad = CliRunner().invoke(optout_app, [*args, "--ttl", "100000"])
    assert isinstance(bad.exception, ClipauditError) and "--ttl 100000" in str(bad.exception)


def test_the_proxy_the_environment_names_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    """Behind an egress proxy a direct fetch finds every origin unreachable, which reads as
    "disallow all": http goes to the proxy as an absolute URL, https as a CONNECT tunnel,
    no_proxy hosts go direct, and the deadline still holds through the proxy."""
    routes = {"/robots.txt": (200, ROBOTS, {}), "/stall": stall}
    with serve(routes) as (origin, log), forward_proxy() as (proxy, seen):  # type: ignore[arg-type]
        host_port = proxy.removeprefix("http://")
        monkeypatch.setenv("http_proxy", proxy.replace("http://", "http://u%40x:p%3Aw@"))
        got = http_get(origin + "/robots.txt", FAST)
        assert (got.outcome, got.body.decode(), got.proxy) == ("fetched", ROBOTS, host_port)
        assert seen.lines == [f"GET {origin}/robots.txt HTTP/1.1"]
        assert seen.auth == ["Basic " + base64.b64encode(b"u@x:p:w").decode()]
        assert [r[1] for r in log.requests] == ["/robots.txt"]
        # A server that never answers, through the proxy: the deadline still ends it.
        t0 = time.monotonic()
        got = http_get(origin + "/stall", HttpSettings(timeout=5.0, deadline=1.0))
        assert got.outcome == "unreachable" and "deadline" in (got.error or "")
        assert time.monotonic() - t0 < 3.0
        # https: a tunnel to the origin is asked for (this proxy refuses it).
        monkeypatch.setenv("https_proxy", proxy)
        got = http_get("https://robots.example.invalid/robots.txt", FAST)
        assert seen.lines[-1] == "CONNECT robots.example.invalid:443 HTTP/1.0"
        assert got.outcome == "unreachable" and "403" in (got.error or "")
        # no_proxy names the host: straight to the origin.
        monkeypatch.setenv("no_proxy", "127.0.0.1")
        asked = len(seen.lines)
        got = http_get(origin + "/robots.txt", FAST)
        assert got.outcome == "fetched" and got.proxy is None and len(seen.lines) == asked


def test_a_proxy_we_cannot_speak_is_one_clear_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("https_proxy", "socks5://127.0.0.1:1080")
    with pytest.raises(ClipauditError, match=r"^The proxy 'socks5://127\.0\.0\.1:1080' .*unset"):
        fetch_origins(["https://example.org"], tmp_path, FetchConfig())
    got = http_get("https://example.org/robots.txt", FAST)
    assert got.outcome == "unreachable" and "socks5://" in (got.error or "")


def test_a_proxy_trickling_its_connect_reply_is_cut_at_the_deadline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The CONNECT reply is read inside ``connect()``, before the watchdog knew the socket:
    a proxy that answered "200 Connection established" and then one header line every half
    second outlived --deadline for good."""
    import socket
    import threading

    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def trickle() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(4096)
            conn.sendall(b"HTTP/1.1 200 Connection established\r\n")
            while not stop.is_set():
                try:
                    conn.sendall(b"X-Slow: 1\r\n")
                except OSError:
                    return
                stop.wait(0.5)

    thread = threading.Thread(target=trickle, daemon=True)
    thread.start()
    monkeypatch.setenv("https_proxy", f"http://127.0.0.1:{listener.getsockname()[1]}")
    t0 = time.monotonic()
    try:
        settings = HttpSettings(timeout=3.0, deadline=1.5)
        got = http_get("https://robots.example.invalid/robots.txt", settings)
    finally:
        stop.set()
        listener.close()
    assert got.outcome == "unreachable"
    assert time.monotonic() - t0 < 6.0, got.error


def test_two_content_lengths_that_disagree_are_unreachable() -> None:
    """RFC 9112 makes such a reply invalid; the first length was believed, and 19 bytes of
    a 31-byte robots.txt allowed the crawler its last line disallows."""
    body = b"User-agent: GPTBot\nDisallow: /\n"

    def two_lengths(h: object) -> None:
        h.send_response(200)  # type: ignore[attr-defined]
        h.send_header("Content-Length", "19")  # type: ignore[attr-defined]
        h.send_header("Content-Length", str(len(body)))  # type: ignore[attr-defined]
        h.end_headers()  # type: ignore[attr-defined]
        h.wfile.write(body)  # type: ignore[attr-defined]

    with serve({"/robots.txt": two_lengths}) as (origin, _):
        got = http_get(origin + "/robots.txt", FAST)
    assert got.outcome == "unreachable" and got.body == b""
    assert "conflicting Content-Length headers: 19, 31" in (got.error or "")
