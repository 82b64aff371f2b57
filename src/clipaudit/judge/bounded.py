"""An HTTP transport for the judge's client that bounds each reply in time and size.

The SDK's timeouts are per phase (connect, each read): a server that trickles its headers or
its body a byte at a time, or never ends the body, would hold a worker for ever and fill
memory. This transport, built on the connection pool of the SDK's own HTTP library, gives
each worker thread its own pool (so the sockets a request can be using are that thread's,
and keep-alive still saves a TLS handshake per call) and arms a watchdog that shuts those
sockets down at the request's end (``max_seconds`` after it started, never past the run's
deadline); the body is capped at ``max_bytes``. Either ends the request as a timeout or a
protocol error, which ``client.ask`` retries or records. Requests sent through a proxy from
the environment go through the library's own transport.
"""

from __future__ import annotations

import contextlib
import heapq
import importlib
import socket
import threading
import time
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


def bounded_http_client(
    max_seconds: float, max_bytes: int = MAX_REPLY_BYTES, deadline: float | None = None
) -> Any:
    """A client for ``openai.OpenAI(http_client=...)`` whose replies end within
    ``max_seconds`` of the request (and by ``deadline``, a ``time.monotonic()`` value) and
    hold at most ``max_bytes``."""
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
        def __init__(self, inner: Any, request: Any, dog: _Watchdog) -> None:
            self.inner, self.request, self.dog = inner, request, dog

        def __iter__(self) -> Iterator[bytes]:
            got = 0
            try:
                for chunk in self.inner:
                    got += len(chunk)
                    if got > max_bytes:
                        raise h.RemoteProtocolError(
                            f"reply over {max_bytes} bytes", request=self.request
                        )
                    yield chunk
            except (core.NetworkError, core.ProtocolError, core.TimeoutException) as exc:
                raise mapped(exc, self.request, self.dog) from exc

        def close(self) -> None:
            self.dog.cancel()
            self.inner.close()

    ssl_context = h.create_ssl_context() if hasattr(h, "create_ssl_context") else None

    class _Bounded(h.BaseTransport):  # type: ignore[name-defined]
        def __init__(self) -> None:
            self.local = threading.local()
            self.pools: list[Any] = []
            self.lock = threading.Lock()

        def _mine(self) -> tuple[Any, _Sockets]:
            """This thread's pool and its sockets."""
            if not hasattr(self.local, "pool"):
                sockets = _Sockets()
                pool = core.ConnectionPool(
                    ssl_context=ssl_context, network_backend=_Backend(sockets)
                )
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
            sockets.arm()
            dog = _Watchdog(end, sockets)
            req = core.Request(
                method=request.method,
                url=core.URL(
                    scheme=request.url.raw_scheme,
                    host=request.url.raw_host,
                    port=request.url.port,
                    target=request.url.raw_path,
                ),
                headers=request.headers.raw,
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
            return h.Response(
                status_code=resp.status,
                headers=resp.headers,
                stream=_Body(resp.stream, request, dog),
                extensions=resp.extensions,
            )

        def close(self) -> None:
            with self.lock:
                pools, self.pools = self.pools, []
            for pool in pools:
                pool.close()

    return h.Client(transport=_Bounded(), follow_redirects=True)
