"""HTTP servers on 127.0.0.1 for the opt-out tests (helpers only: no tests here).

``serve(routes)`` starts a threaded server on an ephemeral port; a route maps a path to
(status, body, headers) or to a function of the request handler, for misbehaving servers.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Route = tuple[int, bytes | str, dict[str, str]] | Callable[[BaseHTTPRequestHandler], None]


@dataclass
class Log:
    """What a server saw: (monotonic time, path, user agent) per request, in-flight peak."""

    requests: list[tuple[float, str, str]] = field(default_factory=list)
    inflight: int = 0
    peak: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    stop: threading.Event = field(default_factory=threading.Event)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients that hang up on a stalling server are the point of these tests


@contextmanager
def serve(
    routes: Mapping[str, Route], log: Log | None = None, delay: float = 0.0
) -> Iterator[tuple[str, Log]]:
    """Yield (origin, log) of a server answering ``routes`` (404 elsewhere)."""
    rec: Log = log or Log()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            with rec.lock:
                rec.requests.append((time.monotonic(), self.path, self.headers["User-Agent"]))
                rec.inflight += 1
                rec.peak = max(rec.peak, rec.inflight)
            try:
                if delay:
                    rec.stop.wait(delay)
            finally:
                # Leave the in-flight count before answering: once the client has read the
                # answer it may send its next request, and on a loaded machine that request
                # can arrive before this thread runs again, which would count one client
                # slot twice.
                with rec.lock:
                    rec.inflight -= 1
            route = routes.get(self.path)
            if route is None:
                route = (404, b"not here", {})
            if callable(route):
                route(self)
                return
            status, body, headers = route
            data = body.encode() if isinstance(body, str) else body
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = _Server(("127.0.0.1", 0), Handler)
    server.stop = rec.stop  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", rec
    finally:
        rec.stop.set()
        server.shutdown()
        server.server_close()


def refused_origin() -> str:
    """An origin on a port nothing listens on (bound, then closed)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"http://127.0.0.1:{port}"


# Misbehaving handlers -------------------------------------------------------------------


def _stop(h: BaseHTTPRequestHandler) -> threading.Event:
    stop: threading.Event = h.server.stop  # type: ignore[attr-defined]
    return stop


def stall(h: BaseHTTPRequestHandler) -> None:
    """Accept the request and say nothing until the test ends."""
    _stop(h).wait(30)


def stall_body(h: BaseHTTPRequestHandler) -> None:
    """Send the headers of a 200, then nothing."""
    h.send_response(200)
    h.send_header("Content-Length", "100")
    h.end_headers()
    h.wfile.flush()
    _stop(h).wait(30)


def reset(h: BaseHTTPRequestHandler) -> None:
    """Abort the connection with a TCP RST."""
    h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    h.connection.close()


def endless(chunk: bytes, pause: float = 0.0) -> Route:
    """A 200 whose body never ends: ``chunk`` again and again, ``pause`` s apart."""

    def run(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "text/plain")
        h.end_headers()
        try:
            while not _stop(h).is_set():
                h.wfile.write(chunk)
                h.wfile.flush()
                if pause:
                    time.sleep(pause)
        except OSError:
            return

    return run


def trickle_headers(h: BaseHTTPRequestHandler) -> None:
    """Send a header line one byte every 10 ms, never ending it."""
    try:
        h.wfile.write(b"HTTP/1.0 200 OK\r\nX-Slow: ")
        while not _stop(h).is_set():
            h.wfile.write(b"a")
            h.wfile.flush()
            time.sleep(0.01)
    except OSError:
        return


@dataclass
class ProxyLog:
    """What a proxy was asked: request lines ("GET http://…", "CONNECT host:443") and the
    Proxy-Authorization header of each."""

    lines: list[str] = field(default_factory=list)
    auth: list[str | None] = field(default_factory=list)


@contextmanager
def forward_proxy(connect_status: int = 403) -> Iterator[tuple[str, ProxyLog]]:
    """Yield (proxy URL, log) of a plain-HTTP proxy: a GET for an absolute URL is sent on to
    the origin and its reply relayed as it comes; a CONNECT is refused with
    ``connect_status`` (the tests need no TLS origin to see the tunnel asked for)."""
    import socketserver

    log = ProxyLog()

    class Handler(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            line = self.rfile.readline().decode("latin-1").strip()
            head: dict[str, str] = {}
            while (h := self.rfile.readline().decode("latin-1").strip()) != "":
                k, _, v = h.partition(":")
                head[k.strip().lower()] = v.strip()
            log.lines.append(line)
            log.auth.append(head.get("proxy-authorization"))
            method, target, _ = line.split(" ", 2)
            if method == "CONNECT":
                self.wfile.write(f"HTTP/1.1 {connect_status} refused\r\n\r\n".encode())
                return
            from urllib.parse import urlsplit

            parts = urlsplit(target)
            path = parts.path + (f"?{parts.query}" if parts.query else "")
            keep = {k: v for k, v in head.items() if not k.startswith("proxy-")}
            keep["connection"] = "close"
            request = f"{method} {path} HTTP/1.1\r\n" + "".join(
                f"{k}: {v}\r\n" for k, v in keep.items()
            )
            with (
                socket.create_connection((parts.hostname or "", parts.port or 80)) as up,
                contextlib.suppress(OSError),
            ):
                up.sendall(request.encode() + b"\r\n")
                while chunk := up.recv(65536):
                    self.wfile.write(chunk)
                    self.wfile.flush()

    class Server(socketserver.ThreadingTCPServer):
        daemon_threads = True
        block_on_close = False
        allow_reuse_address = True

        def handle_error(self, request: Any, client_address: Any) -> None:
            pass

    server = Server(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", log
    finally:
        server.shutdown()
        server.server_close()
