"""A scripted OpenAI-compatible chat server on the loopback interface, for tests and benches.

``POST /v1/chat/completions`` answers from a script: each request takes the next behaviour
(or, when the script is empty, asks ``answer_for(body)``). Behaviours: ``("ok", text)``,
``("status", code, retry_after)``, ``("stall", seconds)`` (then a normal answer), ``("drop",)``
(close the connection with no response), ``("bad_body",)`` (200 with a body that is not
JSON), ``("trickle", seconds_per_byte)`` (a 200 whose declared body comes a byte at a time),
``("endless",)`` (a chunked 200 body that never ends), ``("trickle_headers", pause)`` (a
status line, then header lines for ever). Every request body and header set is
kept for inspection.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar


def completion(text: str, model: str = "scripted") -> dict[str, Any]:
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 100, "completion_tokens": 10, "total_tokens": 110},
    }


class _Quiet(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:
        pass


_L = TypeVar("_L", bound="_Loopback")


class _Loopback:
    """A threaded HTTP server on 127.0.0.1 with ``handler``, run as a context manager."""

    def __init__(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def origin(self) -> str:
        host, port = self.server.server_address[:2]
        assert isinstance(host, str)  # an IPv4 server: typeshed allows bytes for other families
        return f"http://{host}:{port}"

    def __enter__(self: _L) -> _L:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()


class ScriptedServer(_Loopback):
    def __init__(
        self,
        script: list[tuple[Any, ...]] | None = None,
        answer_for: Callable[[dict[str, Any]], str] | None = None,
        delay: float = 0.0,
    ) -> None:
        self.script = list(script or [])
        self.answer_for = answer_for or (lambda body: '{"answer": "yes", "reason": "ok"}')
        self.delay = delay
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.lock = threading.Lock()
        outer = self

        class Handler(_Quiet):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length)
                body = json.loads(raw or b"{}")
                with outer.lock:
                    outer.requests.append(body)
                    outer.headers.append({k.lower(): v for k, v in self.headers.items()})
                    step = outer.script.pop(0) if outer.script else ("ok", None)
                if self.path.rstrip("/") != "/v1/chat/completions":
                    return self._send(404, {"error": {"message": "not found"}})
                if outer.delay:
                    time.sleep(outer.delay)
                kind = step[0]
                if kind == "status":
                    extra = {"Retry-After": str(step[2])} if step[2] is not None else {}
                    return self._send(step[1], {"error": {"message": f"scripted {step[1]}"}}, extra)
                if kind == "stall":
                    time.sleep(step[1])
                if kind == "drop":
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.close_connection = True
                    return None
                if kind == "trickle":
                    data = json.dumps(completion(outer.answer_for(body))).encode()
                    self.send_response(200)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(data)))
                    self.end_headers()
                    with contextlib.suppress(OSError):
                        for i in range(len(data)):
                            self.wfile.write(data[i : i + 1])
                            self.wfile.flush()
                            time.sleep(step[1])
                    return None
                if kind == "trickle_headers":
                    with contextlib.suppress(OSError):
                        self.wfile.write(b"HTTP/1.1 200 OK\r\n")
                        for i in range(100_000):
                            self.wfile.write(b"x-%d: y\r\n" % i)
                            self.wfile.flush()
                            time.sleep(step[1])
                    self.close_connection = True
                    return None
                if kind == "endless":
                    self.send_response(200)
                    self.send_header("content-type", "application/json")
                    self.send_header("transfer-encoding", "chunked")
                    self.end_headers()
                    chunk = b" " * 65536
                    with contextlib.suppress(OSError):
                        while True:
                            self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                    return None
                if kind == "bad_body":
                    data = b"<html>upstream error</html>"
                    self.send_response(200)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    return None
                text = step[1] if kind == "ok" and step[1] is not None else outer.answer_for(body)
                return self._send(200, completion(text, body.get("model", "scripted")))

            def _send(self, code: int, obj: Any, extra: dict[str, str] | None = None) -> None:
                data = json.dumps(obj).encode()
                self.send_response(code)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                for k, v in (extra or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self.wfile.write(data)

        super().__init__(Handler)

    @property
    def url(self) -> str:
        return self.origin + "/v1"


class ForwardingProxy(_Loopback):
    """A plain-HTTP forward proxy on the loopback interface (what ``HTTP_PROXY`` names): each
    request, sent with its absolute URL, goes to the origin with ``Connection: close`` and the
    origin's reply is relayed as it arrives, a trickle staying a trickle. ``targets`` keeps
    the absolute URLs asked for."""

    def __init__(self) -> None:
        self.targets: list[str] = []
        outer = self

        class Handler(_Quiet):
            def do_POST(self) -> None:
                from urllib.parse import urlsplit

                outer.targets.append(self.path)
                parts = urlsplit(self.path)
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                skip = {"connection", "proxy-connection", "keep-alive"}
                head = [f"POST {parts.path or '/'} HTTP/1.1"]
                head += [f"{k}: {v}" for k, v in self.headers.items() if k.lower() not in skip]
                head.append("connection: close")
                self.close_connection = True
                with contextlib.suppress(OSError):
                    port = parts.port or 80
                    with socket.create_connection((parts.hostname or "", port)) as up:
                        up.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + body)
                        # The client is told this connection ends with the reply, as the
                        # proxy's own hop closes it; the rest is relayed as it comes.
                        status = b""
                        while not status.endswith(b"\n") and (byte := up.recv(1)):
                            status += byte
                        self.wfile.write(status + b"connection: close\r\n")
                        while chunk := up.recv(65536):
                            self.wfile.write(chunk)
                            self.wfile.flush()

        super().__init__(Handler)

    @property
    def url(self) -> str:
        return self.origin
