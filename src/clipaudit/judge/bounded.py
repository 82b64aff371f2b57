"""An HTTP transport for the judge's client that bounds each reply in time and size.

The SDK's timeouts are per phase (connect, each read): a server that trickles its headers or
its body a byte at a time, or never ends the body, would hold a worker for ever and fill
memory. This transport, built on the connection pool of the SDK's own HTTP library, gives
each worker thread its own pool (so the sockets a request can be using are that thread's,
and keep-alive still saves a TLS handshake per call) and arms a watchdog that shuts those
sockets down at the request's end (``max_seconds`` after it started, never past the run's
deadline); the body is capped at ``max_bytes``. Either ends the request as a timeout or a
protocol error, which ``client.ask`` retries or records.

A client given its own transport no longer reads proxies from the environment (httpx mounts
them only when it builds its transport itself), so the judge would have ignored
``HTTPS_PROXY`` and gone direct. The proxies the environment names (``HTTP_PROXY``,
``HTTPS_PROXY``, ``ALL_PROXY``, ``NO_PROXY``, read as httpx reads them) are mounted here
as bounded transports of their own: the socket the watchdog shuts down is then the one to
the proxy, which ends the request just the same.
"""

from __future__ import annotations

import contextlib
import heapq
import importlib
import importlib.util
import socket
import threading
import time
import zlib
from collections.abc import Iterator
from types import ModuleType
from typing import Any

# A chat completion of a few hundred tokens is a few KiB; 1 MiB leaves room for any server.
MAX_REPLY_BYTES = 1 << 20


def http_module() -> ModuleType:
    """The HTTP library the installed openai SDK is built on (httpx, or httpx2 from 3.x)."""
    from openai import _base_client

    mod = getattr(_base_client, "httpx2", None) or getattr(_base_client, "httpx", None)
    if not isinstance(mod, ModuleType):  # pragma: no cover - an SDK without either
        raise RuntimeError("the installed openai SDK uses neither httpx nor httpx2")
    return mod


class _Sockets:
    """The sockets one thread's pool has opened and not yet closed."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._socks: list[socket.socket] = []
        self._expired = False  # the current request's end has passed

    def arm(self) -> None:
        """A new request starts on this thread."""
        with self._lock:
            self._expired = False

    def add(self, sock: socket.socket | None) -> None:
        with self._lock:
            self._socks = [s for s in self._socks if s.fileno() != -1]
            if sock is not None:
                self._socks.append(sock)
            late = self._expired
        if late:  # opened after the watchdog fired: this request has no time left
            self._shutdown_all()

    def shutdown(self) -> None:
        with self._lock:
            self._expired = True
        self._shutdown_all()

    def _shutdown_all(self) -> None:
        # shutdown, not close: it wakes a recv blocked in the worker thread and frees no fd
        # that a new connection could take while that thread still holds it. The pool drops
        # a connection shut down while idle before reusing it.
        with self._lock:
            socks = list(self._socks)
        for s in socks:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)


class Interrupt:
    """Set on Ctrl-C: no request is sent after it, and those in flight have their sockets
    shut down at once. Without it the pool's threads ran every request's remaining
    attempts to the end (12 requests sent after a Ctrl-C, 58 s to exit at a 10 s read
    timeout, about five minutes at the default 60 s)."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self._lock = threading.Lock()
        self._sockets: list[_Sockets] = []

    def watch(self, sockets: _Sockets) -> None:
        with self._lock:
            self._sockets.append(sockets)
        if self.event.is_set():
            sockets.shutdown()

    def set(self) -> None:
        self.event.set()
        with self._lock:
            watched = list(self._sockets)
        for sockets in watched:
            sockets.shutdown()

    def is_set(self) -> bool:
        return self.event.is_set()


class _Watchdog:
    """Shuts a thread's sockets down at its request's end; ``fired`` says it did."""

    def __init__(self, end: float, sockets: _Sockets) -> None:
        self.end = end
        self.sockets = sockets
        self.fired = False
        self.cancelled = False
        _CLOCK.arm(self)

    def fire(self) -> None:
        self.fired = True
        self.sockets.shutdown()

    def cancel(self) -> None:
        self.cancelled = True


class _Clock:
    """One daemon thread fires every watchdog at its end (a timer thread per request cost a
    few per cent of the judge's throughput against a 200 ms server on two cores)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, _Watchdog]] = []
        self._seq = 0
        self._thread: threading.Thread | None = None

    def arm(self, dog: _Watchdog) -> None:
        with self._cond:
            self._seq += 1
            heapq.heappush(self._heap, (dog.end, self._seq, dog))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="judge-watchdog")
                self._thread.daemon = True
                self._thread.start()
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._heap and self._heap[0][2].cancelled:
                    heapq.heappop(self._heap)
                if not self._heap:
                    self._cond.wait()
                    continue
                wait = self._heap[0][0] - time.monotonic()
                if wait > 0:
                    self._cond.wait(wait)
                    continue
                dog = heapq.heappop(self._heap)[2]
            if not dog.cancelled:
                dog.fire()


_CLOCK = _Clock()


# Content codings a reply may come in, with zlib's wbits (47: a gzip or a zlib header).
_CODINGS = {"gzip": 47, "x-gzip": 47, "deflate": 47}


def bounded_http_client(
    max_seconds: float,
    max_bytes: int = MAX_REPLY_BYTES,
    deadline: float | None = None,
    interrupt: Interrupt | None = None,
) -> Any:
    """A client for ``openai.OpenAI(http_client=...)`` whose replies end within
    ``max_seconds`` of the request (and by ``deadline``, a ``time.monotonic()`` value) and
    hold at most ``max_bytes``; none is sent once ``interrupt`` is set, and those in flight
    end then."""
    h = http_module()
    core = importlib.import_module("httpcore2" if h.__name__ == "httpx2" else "httpcore")

    def mapped(exc: Exception, request: Any, dog: _Watchdog) -> Exception:
        if dog.fired:
            return h.ReadTimeout(f"reply not complete within {max_seconds:g}s", request=request)
        kind = getattr(h, type(exc).__name__, None)
        if isinstance(kind, type) and issubclass(kind, h.TransportError):
            return kind(str(exc), request=request)
        return h.TransportError(str(exc), request=request)

    class _Backend(core.NetworkBackend):  # type: ignore[name-defined]
        """TCP as usual, each socket recorded for the pool's thread's watchdog."""

        def __init__(self, sockets: _Sockets) -> None:
            self.inner = core.SyncBackend()
            self.sockets = sockets

        def connect_tcp(self, *args: Any, **kwargs: Any) -> Any:
            stream = self.inner.connect_tcp(*args, **kwargs)
            self.sockets.add(stream.get_extra_info("socket"))
            return stream

        def connect_unix_socket(self, *args: Any, **kwargs: Any) -> Any:
            return self.inner.connect_unix_socket(*args, **kwargs)

        def sleep(self, seconds: float) -> None:
            self.inner.sleep(seconds)

    class _Body(h.SyncByteStream):  # type: ignore[name-defined]
        """The reply's bytes, at most ``max_bytes`` of them *decoded*: a gzip or deflate
        body is inflated here (its Content-Encoding taken off, so the HTTP library does not
        inflate it again). Counted on the wire, a 100 KB gzip reply inflated to 100 MB in
        the library, a gigabyte a request at the cap."""

        def __init__(self, inner: Any, request: Any, dog: _Watchdog, wbits: int = 0) -> None:
            self.inner, self.request, self.dog = inner, request, dog
            self.inflate = zlib.decompressobj(wbits) if wbits else None

        def _over(self) -> Exception:
            return h.RemoteProtocolError(f"reply over {max_bytes} bytes", request=self.request)

        def __iter__(self) -> Iterator[bytes]:
            got = 0
            try:
                for raw in self.inner:
                    chunk = raw
                    if self.inflate is not None:
                        try:
                            chunk = self.inflate.decompress(raw, max_bytes + 1 - got)
                        except zlib.error as exc:
                            raise h.DecodingError(
                                f"the compressed reply does not decode: {exc}", request=self.request
                            ) from None
                        if self.inflate.unconsumed_tail:
                            raise self._over()
                    got += len(chunk)
                    if got > max_bytes:
                        raise self._over()
                    if chunk:
                        yield chunk
            except (core.NetworkError, core.ProtocolError, core.TimeoutException) as exc:
                raise mapped(exc, self.request, self.dog) from exc

        def close(self) -> None:
            self.dog.cancel()
            self.inner.close()

    ssl_context = h.create_ssl_context() if hasattr(h, "create_ssl_context") else None

    def new_pool(proxy: Any, backend: _Backend) -> Any:
        """A connection pool, direct or through ``proxy`` (an ``httpx.Proxy``)."""
        if proxy is None:
            return core.ConnectionPool(ssl_context=ssl_context, network_backend=backend)
        url = core.URL(
            scheme=proxy.url.raw_scheme,
            host=proxy.url.raw_host,
            port=proxy.url.port,
            target=proxy.url.raw_path,
        )
        if proxy.url.scheme in ("http", "https"):
            return core.HTTPProxy(
                proxy_url=url,
                proxy_auth=proxy.raw_auth,
                proxy_headers=proxy.headers.raw,
                ssl_context=ssl_context,
                proxy_ssl_context=proxy.ssl_context,
                network_backend=backend,
            )
        return core.SOCKSProxy(  # socks5, checked in proxy_mounts
            proxy_url=url,
            proxy_auth=proxy.raw_auth,
            ssl_context=ssl_context,
            network_backend=backend,
        )

    class _Bounded(h.BaseTransport):  # type: ignore[name-defined]
        def __init__(self, proxy: Any = None) -> None:
            self.proxy = proxy
            self.local = threading.local()
            self.pools: list[Any] = []
            self.lock = threading.Lock()

        def _mine(self) -> tuple[Any, _Sockets]:
            """This thread's pool and its sockets."""
            if not hasattr(self.local, "pool"):
                sockets = _Sockets()
                if interrupt is not None:
                    interrupt.watch(sockets)
                pool = new_pool(self.proxy, _Backend(sockets))
                self.local.pool, self.local.sockets = pool, sockets
                with self.lock:
                    self.pools.append(pool)
            return self.local.pool, self.local.sockets

        def handle_request(self, request: Any) -> Any:
            pool, sockets = self._mine()
            end = time.monotonic() + max_seconds
            if deadline is not None:
                end = min(end, deadline)
            if time.monotonic() >= end:
                raise h.ReadTimeout("the run's deadline has passed", request=request)
            if interrupt is not None and interrupt.is_set():
                raise h.TransportError("interrupted", request=request)
            sockets.arm()
            dog = _Watchdog(end, sockets)
            # Only the codings _Body inflates within its cap (brotli or zstd would be
            # inflated by the HTTP library, uncounted).
            asked = [(k, v) for k, v in request.headers.raw if k.lower() != b"accept-encoding"]
            req = core.Request(
                method=request.method,
                url=core.URL(
                    scheme=request.url.raw_scheme,
                    host=request.url.raw_host,
                    port=request.url.port,
                    target=request.url.raw_path,
                ),
                headers=[*asked, (b"Accept-Encoding", b"gzip, deflate")],
                content=request.stream,
                extensions=request.extensions,
            )
            try:
                resp = pool.handle_request(req)
            except Exception as exc:
                dog.cancel()
                if isinstance(exc, (core.NetworkError, core.ProtocolError, core.TimeoutException)):
                    raise mapped(exc, request, dog) from exc
                if isinstance(exc, core.UnsupportedProtocol):
                    raise h.UnsupportedProtocol(str(exc), request=request) from exc
                raise
            coding = b",".join(v for k, v in resp.headers if k.lower() == b"content-encoding")
            name = coding.decode("latin-1").strip().lower()
            headers = resp.headers
            wbits = 0
            if name not in ("", "identity"):
                wbits = _CODINGS.get(name, 0)
                if not wbits:
                    dog.cancel()
                    resp.close()
                    raise h.DecodingError(
                        f"the reply's content-encoding {name[:40]!r} is not one decoded here",
                        request=request,
                    )
                drop = (b"content-encoding", b"content-length")
                headers = [(k, v) for k, v in resp.headers if k.lower() not in drop]
            return h.Response(
                status_code=resp.status,
                headers=headers,
                stream=_Body(resp.stream, request, dog, wbits),
                extensions=resp.extensions,
            )

        def close(self) -> None:
            with self.lock:
                pools, self.pools = self.pools, []
            for pool in pools:
                pool.close()

    mounts = {
        pattern: None if proxy is None else _Bounded(proxy)
        for pattern, proxy in proxy_mounts(h).items()
    }
    # Redirects are not followed: a 3xx could send the image and the key to another host,
    # and each hop would be a request the --budget did not count (client.ask names it).
    return h.Client(transport=_Bounded(), mounts=mounts, follow_redirects=False)


def proxy_mounts(h: ModuleType) -> dict[str, Any]:
    """URL pattern → ``h.Proxy`` (or None: go direct, from ``NO_PROXY``) for the proxies
    the environment names, as the HTTP library would mount them for a client of its own."""
    from clipaudit.errors import ClipauditError

    env = h._utils.get_environment_proxies()
    out: dict[str, Any] = {}
    for pattern, url in env.items():
        if url is None:
            out[pattern] = None
            continue
        try:
            proxy = h.Proxy(url)
        except (ValueError, TypeError) as exc:
            raise ClipauditError(
                f"The proxy {url!r} from the environment is not a usable URL ({exc}); fix or "
                "unset HTTP_PROXY / HTTPS_PROXY / ALL_PROXY."
            ) from None
        socks = proxy.url.scheme in ("socks5", "socks5h")
        if socks and importlib.util.find_spec("socksio") is None:
            raise ClipauditError(
                f"The proxy {url!r} from the environment is a SOCKS proxy, which needs the "
                "socksio package: pip install socksio."
            )
        out[pattern] = proxy
    return out
