"""One bounded HTTP GET: our User-Agent, at most five redirects to http(s) only, a size cap,
a per-read timeout and a total deadline enforced by a watchdog, so a server that stalls,
trickles or never ends cannot hold a worker past the deadline.

Outcomes follow RFC 9309: 2xx ``fetched``; 4xx ``unavailable`` (no rules: allow); 5xx,
429, network failure, too many redirects or the deadline ``unreachable`` (disallow all).
We ask for the identity coding, but misconfigured servers and CDNs send gzip anyway: gzip and
deflate bodies are undone (capped after decoding, so a small bomb cannot expand past the
cap); a coding we cannot read is ``unreachable``, not an empty file that would allow all.

A proxy the environment names (``http_proxy``, ``https_proxy``, ``all_proxy``, with
``no_proxy`` exceptions, as urllib reads them) is used: https through a CONNECT tunnel,
http by asking the proxy for the absolute URL. Without it, a crawl behind an egress proxy
would find every origin unreachable, which RFC 9309 reads as "disallow all".
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import ssl
import threading
import time
import urllib.request
import zlib
from base64 import b64encode
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urljoin, urlsplit, urlunsplit

from clipaudit.optout.agents import USER_AGENT

# RFC 9309: parse at least 500 KiB; we read 512 KiB and ignore the rest.
MAX_BYTES = 512 * 1024
MAX_REDIRECTS = 5
_REDIRECTS = {301, 302, 303, 307, 308}
_CHUNK = 16 * 1024
# Content codings undone, with zlib's wbits: 47 reads a gzip or a zlib header.
_CODINGS = {"gzip": 47, "x-gzip": 47, "deflate": 47}


@dataclass(frozen=True)
class HttpSettings:
    timeout: float = 10.0  # connect and each read
    deadline: float = 30.0  # the whole fetch, redirects included
    max_bytes: int = MAX_BYTES
    max_redirects: int = MAX_REDIRECTS
    user_agent: str = USER_AGENT


@dataclass
class Fetched:
    url: str
    final_url: str
    outcome: str  # fetched / unavailable / unreachable
    status: int | None = None
    body: bytes = b""
    truncated: bool = False
    redirects: list[str] = field(default_factory=list)
    error: str | None = None
    elapsed_s: float = 0.0
    proxy: str | None = None  # host:port of the proxy the last request went through


@dataclass(frozen=True)
class Proxy:
    host: str
    port: int
    headers: dict[str, str]  # Proxy-Authorization where the URL carries a user

    @property
    def name(self) -> str:
        return f"{self.host}:{self.port}"


def env_proxy(scheme: str, host: str) -> Proxy | None:
    """The proxy the environment names for ``scheme``://``host``, or None (none named, or
    ``no_proxy`` lists the host). Raises ValueError for a proxy URL we cannot use (only plain
    ``http://`` proxies are spoken here)."""
    proxies = urllib.request.getproxies_environment()
    url = proxies.get(scheme) or proxies.get("all")
    bypass = urllib.request.proxy_bypass_environment  # type: ignore[attr-defined]
    if not url or bypass(host, proxies):
        return None
    parts = urlsplit(url if "://" in url else "http://" + url)
    try:
        port = parts.port or 80
    except ValueError:
        port = 0
    if parts.scheme != "http" or not parts.hostname or not port:
        raise ValueError(
            f"the proxy {url[:200]!r} from the environment is not an http://host:port proxy "
            "(https and SOCKS proxies are not supported for opt-out fetches)"
        )
    headers = {}
    if parts.username is not None:
        pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        headers["Proxy-Authorization"] = "Basic " + b64encode(pair.encode()).decode()
    return Proxy(parts.hostname, port, headers)


class HostRateLimiter:
    """At most ``rate`` request starts per second to each host:port, across threads."""

    def __init__(self, rate: float | None) -> None:
        self.interval = 1.0 / rate if rate else 0.0
        self._next: dict[str, float] = {}
        self._lock = threading.Lock()

    def reserve(self, host: str) -> float:
        """Book the next slot for ``host``; returns the monotonic time it starts."""
        with self._lock:
            now = time.monotonic()
            slot = max(now, self._next.get(host, now))
            self._next[host] = slot + self.interval
            return slot


def _classify(status: int) -> str:
    if 200 <= status < 300:
        return "fetched"
    # 429 is the server asking us to back off; 407 is a proxy refusing us, not the origin
    # saying it has no rules (read as "allowed", a proxy's refusal would allow every agent).
    if 400 <= status < 500 and status not in (407, 429):
        return "unavailable"
    return "unreachable"


def _abort(socks: list[socket.socket], fired: threading.Event, conn: Any = None) -> None:
    """Watchdog: shut the socket so a blocked read returns at once. (http.client hands the
    socket to the response and drops its own reference, so we keep ours.) The connection's
    own socket too: a proxy's CONNECT reply is read inside ``connect()``, before ours is
    known, and one trickling a header line at a time outlived every deadline."""
    fired.set()
    own = getattr(conn, "sock", None)
    for sock in [*socks, *([own] if own is not None else [])]:
        with contextlib.suppress(OSError):  # already closed: nothing left to stop
            sock.shutdown(socket.SHUT_RDWR)


def _internal(peer: Any) -> bool:
    """Whether a connected peer's address is not on the public internet (loopback, private,
    link-local, reserved). Dataset urls are untrusted: a public origin's redirect to such an
    address reached an internal service and its reply was stored in the cache."""
    import ipaddress

    try:
        return not ipaddress.ip_address(str(peer[0]).split("%")[0]).is_global
    except (ValueError, IndexError, TypeError):
        return False


def _read_capped(resp: http.client.HTTPResponse, cap: int) -> tuple[bytes, bool]:
    buf = bytearray()
    while len(buf) <= cap:
        chunk = resp.read1(_CHUNK)
        if not chunk:
            # read1 ends quietly when the server hangs up early; a body shorter than its
            # Content-Length is a cut transfer (half a robots.txt could allow too much).
            if resp.length:
                raise http.client.IncompleteRead(bytes(buf), resp.length)
            return bytes(buf), False
        buf += chunk
    return bytes(buf[:cap]), True


def decode_body(raw: bytes, coding: str | None, cap: int, whole: bool = True) -> tuple[bytes, bool]:
    """``raw`` with its Content-Encoding undone: at most ``cap`` bytes, and whether there was
    more. Raises ValueError for a coding we cannot read or a body that does not decode: a
    compressed stream that stops before its end marker although ``raw`` is the whole body
    (not cut at the read cap) was read as a complete robots.txt without its last groups."""
    name = (coding or "identity").strip().lower()
    if name in ("", "identity"):
        return raw, False
    wbits = _CODINGS.get(name)
    if wbits is None:
        raise ValueError(f"content-encoding {name[:40]!r} is not one we can read")
    got = _inflate(raw, wbits, cap, whole)
    if got is None and name == "deflate":  # raw deflate, no zlib header: some servers send it
        got = _inflate(raw, -15, cap, whole)
    if got is None:
        raise ValueError(f"the {name} body does not decode (damaged or cut short)")
    return got


def _inflate(raw: bytes, wbits: int, cap: int, whole: bool) -> tuple[bytes, bool] | None:
    dec = zlib.decompressobj(wbits)
    try:
        out = dec.decompress(raw, cap + 1)
    except zlib.error:
        return None
    more = len(out) > cap or bool(dec.unconsumed_tail)
    if whole and not more and not dec.eof:
        return None  # the stream ends before its end marker: a cut transfer
    return out[:cap], more


def http_get(url: str, settings: HttpSettings, limiter: HostRateLimiter | None = None) -> Fetched:
    """GET ``url`` within ``settings``; never raises for network or server trouble."""
    t0 = time.monotonic()
    result = Fetched(url=url, final_url=url, outcome="unreachable")
    end: float | None = None
    current = url
    starts_inside: bool | None = None  # whether the first hop's address is internal
    while True:
        parts = urlsplit(current)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            result.error = f"redirect to a non-http(s) url {current[:200]!r}"
            break
        try:
            port = parts.port
        except ValueError:
            result.error = f"bad port in {current[:200]!r}"
            break
        if limiter is not None:
            delay = limiter.reserve(parts.netloc.lower()) - time.monotonic()
            if end is not None and time.monotonic() + delay > end:
                result.error = "deadline exceeded waiting for the host's rate limit"
                break
            if delay > 0:
                time.sleep(delay)
        if end is None:  # the deadline counts from the first request, not the queue
            end = time.monotonic() + settings.deadline
        remaining = end - time.monotonic()
        if remaining <= 0:
            result.error = "deadline exceeded"
            break
        try:
            proxy = env_proxy(parts.scheme, parts.hostname)
        except ValueError as exc:
            result.error = str(exc)
            break
        result.proxy = proxy.name if proxy else None
        conn: http.client.HTTPConnection
        timeout = min(settings.timeout, remaining)
        target = parts.path or "/"
        if parts.query:
            target += "?" + parts.query
        headers = {"User-Agent": settings.user_agent, "Accept-Encoding": "identity"}
        if parts.scheme == "https":
            ctx = ssl.create_default_context()
            if proxy is None:
                conn = http.client.HTTPSConnection(
                    parts.hostname, port, timeout=timeout, context=ctx
                )
            else:  # TLS to the origin inside a CONNECT tunnel through the proxy
                conn = http.client.HTTPSConnection(
                    proxy.host, proxy.port, timeout=timeout, context=ctx
                )
                conn.set_tunnel(parts.hostname, port or 443, headers=proxy.headers)
        elif proxy is None:
            conn = http.client.HTTPConnection(parts.hostname, port, timeout=timeout)
        else:  # the proxy is asked for the absolute URL, credentials in it left out
            conn = http.client.HTTPConnection(proxy.host, proxy.port, timeout=timeout)
            netloc = parts.netloc.rpartition("@")[2]
            target = urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))
            headers.update(proxy.headers)
        fired = threading.Event()
        socks: list[socket.socket] = []
        watchdog = threading.Timer(remaining, _abort, (socks, fired, conn))
        watchdog.daemon = True
        watchdog.start()
        try:
            conn.connect()  # bounded by the connect timeout, itself within the deadline
            if conn.sock is not None:
                socks.append(conn.sock)
                if proxy is None:  # through a proxy the peer is the proxy: not told here
                    inside = _internal(conn.sock.getpeername())
                    if starts_inside is None:
                        starts_inside = inside
                    elif inside and not starts_inside:
                        result.error = (
                            f"a redirect from a public origin to the internal address "
                            f"{conn.sock.getpeername()[0]} ({current[:200]!r}): not followed"
                        )
                        break
            if fired.is_set():
                raise TimeoutError("deadline reached while connecting")
            conn.request("GET", target, headers=headers)
            resp = conn.getresponse()
            result.status = resp.status
            lengths = {v.strip() for v in resp.headers.get_all("Content-Length") or []}
            if len(lengths) > 1:  # RFC 9112 6.3: an invalid message, whichever is believed
                said = ", ".join(sorted(lengths))[:100]
                result.error = f"conflicting Content-Length headers: {said}"
                break
            location = resp.getheader("Location")
            if resp.status in _REDIRECTS and location:
                result.redirects.append(current)
                if len(result.redirects) > settings.max_redirects:
                    result.error = f"more than {settings.max_redirects} redirects"
                    break
                current = urljoin(current, location.strip())
                continue
            result.outcome = _classify(resp.status)
            if result.outcome == "fetched":
                raw, cut = _read_capped(resp, settings.max_bytes)
                coding = resp.getheader("Content-Encoding")
                result.body, more = decode_body(raw, coding, settings.max_bytes, whole=not cut)
                result.truncated = cut or more
            if fired.is_set():  # the read "ended" only because the watchdog cut it
                result.outcome, result.body = "unreachable", b""
                result.error = f"deadline of {settings.deadline:g}s exceeded"
            break
        except (
            OSError,
            ValueError,
            http.client.HTTPException,
        ) as exc:  # ValueError: bad IDNA, non-ASCII path
            result.outcome, result.body = "unreachable", b""
            # The socket timeout is capped at the time left, so on a loaded machine it can
            # fire before the watchdog thread runs: past the deadline, it is the deadline.
            past_deadline = fired.is_set() or time.monotonic() >= end
            result.error = (
                f"deadline of {settings.deadline:g}s exceeded"
                if past_deadline
                else f"{type(exc).__name__}: {str(exc)[:200]}"
            )
            break
        finally:
            watchdog.cancel()
            conn.close()
    if result.outcome != "fetched":
        result.body, result.truncated = b"", False
    result.final_url = current
    result.elapsed_s = round(time.monotonic() - t0, 3)
    return result
