"""``clipaudit judge`` when the server fails, refuses, redirects or asks to wait: what is
recorded, what decide applies, what the command says and exits with, and how many requests
the server sees."""

from __future__ import annotations

import email.utils
import functools
import json
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from clipaudit.judge import client as judge_client
from clipaudit.judge.client import RequestBudget, Settings, ask, make_client
from clipaudit.judge.run import run_judge
from tests.conftest import WorldRuns
from tests.judge_server import _Loopback, _Quiet, completion

YES = '{"answer": "yes", "reason": "matches"}'
MSGS = [{"role": "user", "content": "q"}]
CHOICES = ["yes", "no"]

# (status, headers, body) for one request; the request's JSON body and its number (from 1).
Reply = tuple[int, dict[str, str], bytes]
Respond = Callable[[dict[str, Any], int], Reply]


def ok() -> Reply:
    return 200, {}, json.dumps(completion(YES)).encode()


class Server(_Loopback):
    """A loopback chat server whose every reply ``respond`` decides; ``seen`` keeps each
    request's (monotonic time, path, JSON body)."""

    def __init__(self, respond: Respond, host: str = "127.0.0.1") -> None:
        self.seen: list[tuple[float, str, dict[str, Any]]] = []
        lock = threading.Lock()
        outer = self

        class Handler(_Quiet):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("content-length") or 0))
                body = json.loads(raw or b"{}")
                with lock:
                    outer.seen.append((time.monotonic(), self.path, body))
                    k = len(outer.seen)
                code, headers, data = respond(body, k)
                self.send_response(code)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

        super().__init__(Handler)
        if host != "127.0.0.1":  # rebind: _Loopback listens on 127.0.0.1
            self.server.server_close()
            self.server = type(self.server)((host, 0), Handler)
            self.server.daemon_threads = True
            self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return self.origin + "/v1"


def settings(url: str, **kw: Any) -> Settings:
    return Settings(**{"model": "vlm", "endpoint": url, "api_key": "x", "backoff": 0.01, **kw})


# --- the response_format fallback -------------------------------------------------------


@pytest.mark.parametrize(
    "refusal",
    [
        b'{"error": "unsupported parameter"}',
        b'{"error": {"message": "Unsupported param: json_schema", "type": "invalid_request"}}',
        b"",
    ],
)
def test_any_400_to_response_format_is_asked_again_without_it_and_remembered(
    refusal: bytes,
) -> None:
    """The fallback needed the text "response_format" in the error; servers word it otherwise
    (or send nothing), and every sample failed."""

    def respond(body: dict[str, Any], k: int) -> Reply:
        return (400, {}, refusal) if "response_format" in body else ok()

    with Server(respond) as srv:
        s = settings(srv.url)
        client = make_client(s)
        reply = ask(client, s, MSGS, CHOICES, time.monotonic() + 30)
        assert reply.text == YES and reply.error is None and not reply.structured
        assert reply.attempts == 2  # the refused request and the plain one
        assert ["response_format" in b for _, _, b in srv.seen] == [True, False]
        # Remembered for the rest of the run: the next question goes plainly at once.
        assert s.response_format is False
        reply = ask(client, s, MSGS, CHOICES, time.monotonic() + 30)
        assert reply.text == YES and reply.attempts == 1
        assert "response_format" not in srv.seen[-1][2] and len(srv.seen) == 3


def test_a_400_that_is_not_about_response_format_fails_and_is_not_remembered() -> None:
    with Server(lambda body, k: (400, {}, b'{"error": {"message": "image too large"}}')) as srv:
        s = settings(srv.url)
        reply = ask(make_client(s), s, MSGS, CHOICES, time.monotonic() + 30)
    assert reply.error is not None and reply.error.startswith("HTTP 400: ")
    assert "image too large" in reply.error and reply.attempts == 2 and len(srv.seen) == 2
    assert s.response_format is True  # the plain request was refused too: not the parameter


# --- redirects ---------------------------------------------------------------------------


@pytest.fixture()
def other_host() -> Iterator[Server]:
    """A second server, on 127.0.0.2 (another host on the loopback network)."""
    with Server(lambda body, k: ok(), host="127.0.0.2") as srv:
        yield srv


def test_a_redirect_to_another_host_is_not_followed(other_host: Server) -> None:
    """A 307 to 127.0.0.2 was followed: the image and the key went there, and its answer was
    recorded as the endpoint's."""
    target = other_host.url + "/chat/completions?key=sk-in-query"

    with Server(lambda body, k: (307, {"location": target}, b"")) as srv:
        s = settings(srv.url)
        reply = ask(make_client(s), s, MSGS, CHOICES, time.monotonic() + 30)
    assert reply.text is None and reply.attempts == 1 and len(srv.seen) == 1
    assert reply.error == (
        f"HTTP 307 redirect to {other_host.url}/chat/completions, not followed"
    )  # the query (a key may ride in it) is not repeated
    assert other_host.seen == []


def test_a_redirect_loop_costs_one_request() -> None:
    """A 302 to itself was followed 20 times an attempt, and the attempt retried 5 times."""
    with Server(lambda body, k: (302, {"location": "/v1/chat/completions"}, b"")) as srv:
        s = settings(srv.url)
        reply = ask(make_client(s), s, MSGS, CHOICES, time.monotonic() + 30, RequestBudget(9))
    assert len(srv.seen) == 1 and reply.attempts == 1
    assert reply.error == f"HTTP 302 redirect to {srv.url}/chat/completions, not followed"


# --- Retry-After and the deadline --------------------------------------------------------


def test_retry_after_as_an_http_date_is_honoured() -> None:
    def respond(body: dict[str, Any], k: int) -> Reply:
        if k > 1:
            return ok()
        when = email.utils.formatdate(time.time() + 2, usegmt=True)  # 1 s resolution
        return 429, {"retry-after": when}, b"{}"

    with Server(respond) as srv:
        s = settings(srv.url)
        reply = ask(make_client(s), s, MSGS, CHOICES, time.monotonic() + 30)
    assert reply.text == YES and reply.attempts == 2
    # The plain backoff (10-20 ms here) would have asked again at once.
    gap = srv.seen[1][0] - srv.seen[0][0]
    assert 0.9 < gap < 3.0, gap


@pytest.mark.parametrize(
    ("retry_after", "left", "error"),
    [
        ("99999", 3.0, "HTTP 429 (Retry-After 99999 s exceeds the time left)"),
        ("90", 600.0, "HTTP 429 (Retry-After 90 s exceeds the 60 s the judge waits)"),
    ],
)
def test_a_retry_after_longer_than_the_judge_waits_fails_at_once(
    retry_after: str, left: float, error: str
) -> None:
    """It was capped at 60 s, silently, and the request slept until the deadline."""
    with Server(lambda body, k: (429, {"retry-after": retry_after}, b"{}")) as srv:
        s = settings(srv.url)
        t0 = time.monotonic()
        reply = ask(make_client(s), s, MSGS, CHOICES, time.monotonic() + left)
        took = time.monotonic() - t0  # (the server's shutdown takes up to 0.5 s)
    assert reply.error == error and reply.attempts == 1 and took < 1.0


def test_the_deadline_keeps_the_errors_before_it() -> None:
    """A request cut by the deadline was recorded as "deadline", the 500s behind it lost."""
    with Server(lambda body, k: (500, {}, b'{"error": "boom"}')) as srv:
        s = settings(srv.url, backoff=0.2, max_attempts=50)
        reply = ask(make_client(s), s, MSGS, CHOICES, time.monotonic() + 1.5)
    assert reply.error == f"deadline after HTTP 500 ×{len(srv.seen)}"
    assert reply.attempts == len(srv.seen) >= 2


def test_retry_after_values() -> None:
    class Exc:
        def __init__(self, value: str) -> None:
            import httpx2

            self.response = httpx2.Response(429, headers={"retry-after": value})

    assert judge_client.retry_after(Exc("2.5")) == 2.5
    assert judge_client.retry_after(Exc("-5")) is None  # not a delay: the backoff, not "now"
    assert judge_client.retry_after(Exc("soon")) is None
    assert judge_client.retry_after(Exc("nan")) is None
    past = email.utils.formatdate(time.time() - 100, usegmt=True)
    assert judge_client.retry_after(Exc(past)) == 0.0
    soon = email.utils.formatdate(time.time() + 30, usegmt=True)
    got = judge_client.retry_after(Exc(soon))
    assert got is not None and 28 <= got <= 30


# --- the run: every selected sample recorded, the exit status, the budget -----------------


@pytest.fixture(scope="module")
def world(world_runs: WorldRuns) -> Path:
    return world_runs(
        "judge_failures",
        split="pool",
        n=40,
        seed=5,
        stages=["quality", "hashes", "alignment"],
        gates=False,
    ).run


@pytest.fixture()
def run(world: Path, tmp_path: Path) -> Path:
    """A fresh copy of the module's run (judge and decide write into it)."""
    return Path(shutil.copytree(world, tmp_path / "run"))


@pytest.fixture()
def quick(monkeypatch: pytest.MonkeyPatch) -> None:
    """The run's requests retry after 10 ms, not 0.5 s doubling: the same path, faster."""
    from clipaudit.judge import run as judge_run

    monkeypatch.setattr(judge_run, "Settings", functools.partial(Settings, backoff=0.01))


def _ids(run: Path, n: int) -> list[str]:
    dec = pq.read_table(run / "decisions.parquet", columns=["id", "decision"]).to_pylist()
    return [d["id"] for d in dec if d["decision"] != "error"][:n]


def _select(ids: list[str]) -> str:
    return f"id in ({', '.join(repr(i) for i in ids)})"


def _verdicts(run: Path) -> dict[str, dict[str, Any]]:
    return {r["id"]: r for r in pq.read_table(run / "judge" / "verdicts.parquet").to_pylist()}


def test_every_selected_sample_is_in_the_verdicts_with_its_status(run: Path, quick: None) -> None:
    """Samples that got no answer were missing from verdicts.parquet, and an unparseable
    answer's row did not say why."""
    from clipaudit.curate.decide import decide_run

    ids = _ids(run, 3)
    script = [ok(), (200, {}, json.dumps(completion("Sure, looks fine")).encode())]
    script += [(500, {}, b"{}")] * 5

    select = _select(ids)
    srv = Server(lambda body, k: script[k - 1] if k <= len(script) else ok())
    with srv:
        info = run_judge(run, srv.url, "vlm", select_expr=select, concurrency=1, api_key_env="")
        assert (info["ok"], info["unparseable"], info["failed"], info["answered"]) == (1, 1, 1, 2)
        assert info["failures"] == {"HTTP 500": 1} and info["requests"] == len(srv.seen) == 7
        rows = _verdicts(run)
        assert sorted(rows) == sorted(ids)
        got = [(rows[i]["status"], rows[i]["verdict"], rows[i]["problem"]) for i in ids]
        assert got == [
            ("ok", "yes", None),
            ("unparseable", None, "not JSON"),
            ("failed", None, "HTTP 500"),
        ]
        # decide applies the ok verdict only.
        before = {d["id"]: d for d in pq.read_table(run / "decisions.parquet").to_pylist()}
        decide_run(run, "default", write_kept=False, gates=False)
        dec = {d["id"]: d for d in pq.read_table(run / "decisions.parquet").to_pylist()}
        assert [dec[i]["judge_faithful"] for i in ids] == ["yes", None, None]
        for i in ids[1:]:
            assert sorted(dec[i]["reasons"]) == sorted(before[i]["reasons"])
        # A re-run asks again only the failed one; answered, it replaces the failure.
        again = run_judge(run, srv.url, "vlm", select_expr=select, concurrency=1, api_key_env="")
        assert again["cached"] == 2 and again["ok"] == 1 and len(srv.seen) == 8
        assert _verdicts(run)[ids[2]]["status"] == "ok"


def test_no_answer_at_all_exits_1_and_says_why(run: Path, quick: None) -> None:
    """Every request failed, and the command exited 0 with a bare "failed 3"."""
    from clipaudit.cli import app
    from clipaudit.curate.decide import decide_run

    ids = _ids(run, 3)
    args = ["judge", str(run), "--model", "vlm", "--select", _select(ids), "--concurrency", "1"]
    with Server(lambda body, k: (500, {}, b'{"error": "boom"}')) as srv:
        done = CliRunner().invoke(app, [*args, "--endpoint", srv.url])
    assert done.exit_code == 1, done.output
    line = " ".join(done.output.split())
    assert "ok 0, unparseable 0, failed 3 (HTTP 500: 3);" in line
    assert "error: none of the 3 selected samples got an answer" in line
    assert len(srv.seen) == 3 * 5  # five attempts each
    rows = _verdicts(run)
    assert sorted(rows) == sorted(ids)
    assert {(r["status"], r["verdict"], r["problem"]) for r in rows.values()} == {
        ("failed", None, "HTTP 500")
    }
    decide_run(run, "default", write_kept=False, gates=False)
    names = pq.read_schema(run / "decisions.parquet").names
    assert not [c for c in names if c.startswith("judge_")]  # nothing applied
    # The report says the judge was asked and got nothing, instead of leaving no trace.
    from clipaudit.reports.render import write_report

    files = write_report([run], run / "r.html")
    section = json.loads(Path(files.json).read_text())["sections"][0]
    (faithful,) = [j for j in section["judge"] if j["rubric"] == "faithful"]
    assert (faithful["asked"], faithful["no_answer"], faithful["answered"]) == (3, 3, 0)
    assert faithful["agreement"] is None
    assert "no usable answer" in Path(files.html).read_text()
    # Answers on the next try: exit 0.
    with Server(lambda body, k: ok()) as srv:
        done = CliRunner().invoke(app, [*args, "--endpoint", srv.url])
    assert done.exit_code == 0, done.output
    assert "ok 3, unparseable 0, failed 0;" in " ".join(done.output.split())


@pytest.mark.parametrize(
    ("respond", "problems"),
    [
        (
            lambda body, k: (500, {}, b"{}"),
            [
                "HTTP 500 ×2 (then the --budget of 2 requests was spent)",
                "not asked (the --budget of 2 requests was spent)",
            ],
        ),
        (
            lambda body, k: (302, {"location": "/v1/chat/completions"}, b""),
            ["HTTP 302 redirect to {url}/chat/completions, not followed"] * 2,
        ),
    ],
    ids=["retries", "redirect-loop"],
)
def test_the_budget_counts_every_request_sent(
    run: Path, quick: None, respond: Respond, problems: list[str]
) -> None:
    """--budget 2 against a redirect loop: the server saw 168 requests (20 redirects an
    attempt, five attempts); retries were not counted either."""
    ids = _ids(run, 5)
    with Server(respond) as srv:
        info = run_judge(
            run, srv.url, "vlm", select_expr=_select(ids), budget=2, concurrency=1, api_key_env=""
        )
    assert len(srv.seen) <= 2 and info["requests"] == len(srv.seen)
    assert info["selected"] == 2 and info["answered"] == 0
    rows = _verdicts(run)
    assert [rows[i]["problem"] for i in ids[:2]] == [p.format(url=srv.url) for p in problems]


# --- replies that are not what they claim ---------------------------------------------


def _gzip(data: bytes) -> bytes:
    import gzip

    return gzip.compress(data)


def test_a_gzip_reply_is_read_and_a_gzip_bomb_is_cut_after_inflating() -> None:
    """The 1 MiB reply cap counted bytes on the wire: a 100 KB gzip reply inflated to
    100 MB in the HTTP library (1 GB of memory at four in flight). A gzip or deflate reply
    is inflated inside the cap now; a coding not read here is an error, not a bypass."""
    answer = json.dumps(completion(YES)).encode()
    replies = {
        "gzip": (200, {"content-encoding": "gzip"}, _gzip(answer)),
        "bomb": (200, {"content-encoding": "gzip"}, _gzip(b" " * (64 << 20))),
        "brotli": (200, {"content-encoding": "br"}, b"\x1b\x00"),
    }
    got = {}
    for name, reply in replies.items():
        with Server(lambda body, k, reply=reply: reply) as srv:  # type: ignore[misc]
            s = settings(srv.url, max_attempts=1)
            got[name] = ask(make_client(s), s, MSGS, CHOICES, time.monotonic() + 30)
    assert got["gzip"].text == YES and got["gzip"].error is None
    assert len(_gzip(b" " * (64 << 20))) < 100_000
    assert got["bomb"].text is None and "reply over 1048576 bytes" in (got["bomb"].error or "")
    assert "content-encoding 'br' is not one decoded here" in (got["brotli"].error or "")


@pytest.mark.parametrize(
    ("reply", "shape"),
    [
        ((200, {"content-type": "text/html"}, b"<html>sign in</html>"), "text '<html>sign in"),
        ((200, {}, b'{"error": {"message": "quota exceeded"}}'), "an error object"),
        ((200, {}, b'{"id": "x", "object": "chat.completion"}'), "no choices"),
    ],
    ids=["login-page", "error-object", "no-choices"],
)
def test_a_200_that_is_not_a_completion_is_failed_and_asked_again(
    run: Path, quick: None, reply: Reply, shape: str
) -> None:
    """An auth proxy's login page or an error object under 200 was stored as the model's
    empty answer, final: the next run against a healthy server asked nothing."""
    ids = _ids(run, 2)
    kw: dict[str, Any] = {"select_expr": _select(ids), "concurrency": 1, "api_key_env": ""}
    with Server(lambda body, k: reply) as srv:
        info = run_judge(run, srv.url, "vlm", **kw)
    assert info["answered"] == 0 and info["failed"] == 2
    (problem,) = info["failures"]
    assert problem.startswith("HTTP 200 that is not a chat completion: " + shape), problem
    with Server(lambda body, k: ok()) as srv:
        again = run_judge(run, srv.url, "vlm", **kw)
        assert again["asked"] == 2 and again["ok"] == 2 and len(srv.seen) == 2


def test_token_counts_that_are_not_counts_keep_the_answer() -> None:
    """``usage.prompt_tokens`` of 1e999 raised OverflowError out of the run (its answers
    unsaved); a negative count made a negative cost; a word failed a good answer."""
    for usage in ('{"prompt_tokens": 1e999, "completion_tokens": 3}',
                  '{"prompt_tokens": -3000000000, "completion_tokens": "lots"}'):  # fmt: skip
        body = json.dumps(completion(YES))[:-1] + f', "usage": {usage}}}'
        with Server(lambda b, k, body=body: (200, {}, body.encode())) as srv:  # type: ignore[misc]
            s = settings(srv.url, max_attempts=1)
            r = ask(make_client(s), s, MSGS, CHOICES, time.monotonic() + 30)
        assert r.text == YES and r.error is None, usage
        assert r.prompt_tokens == 0 and r.completion_tokens in (0, 3)


def test_a_refused_key_stops_the_run_after_one_request(run: Path, quick: None) -> None:
    """A wrong key sent every selected sample (32 requests, 32 x HTTP 401) and never named
    the key's variable. The first refusal stops the run; the rest are not sent."""
    from clipaudit.cli import app

    ids = _ids(run, 6)
    refusal = b'{"error": {"message": "Incorrect API key provided: sk-...", "type": "auth"}}'
    with Server(lambda body, k: (401, {}, refusal)) as srv:
        args = ["judge", str(run), "--model", "vlm", "--select", _select(ids),
                "--concurrency", "1", "--endpoint", srv.url]  # fmt: skip
        done = CliRunner().invoke(app, args)
        assert len(srv.seen) == 1
    line = " ".join(done.output.split())
    assert done.exit_code == 1, done.output
    assert "asked 1 (cached 0, not sent 5)" in line
    assert "error: the server refused the request (HTTP 401: Incorrect API key provided" in line
    assert "check the key in $OPENAI_API_KEY (--api-key-env), --model and --endpoint" in line
    rows = _verdicts(run)
    assert sorted(rows) == sorted(ids)
    problems = sorted(r["problem"] for r in rows.values())
    assert problems[0].startswith("HTTP 401: Incorrect API key provided")
    assert all(p.startswith("not asked (the server refused: HTTP 401") for p in problems[1:])


def test_ctrl_c_sends_nothing_more_and_ends_the_requests_in_flight(run: Path) -> None:
    """Against a server that never answers, Ctrl-C left the pool's threads to run every
    request's remaining attempts: 12 requests after it, 58 s to exit at a 10 s read
    timeout. Now nothing more is sent, the requests in flight end at once, and their
    samples are recorded as interrupted (asked again on the next run)."""
    import signal
    import subprocess
    import sys

    ids = _ids(run, 6)
    release = threading.Event()

    def never(body: dict[str, Any], k: int) -> Reply:
        release.wait(120)
        return ok()

    with Server(never) as srv:
        cmd = [sys.executable, "-m", "clipaudit", "judge", str(run), "--model", "vlm",
               "--select", _select(ids), "--concurrency", "2", "--endpoint", srv.url,
               "--read-timeout", "30"]  # fmt: skip
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            t_end = time.monotonic() + 120
            while len(srv.seen) < 2 and time.monotonic() < t_end and proc.poll() is None:
                time.sleep(0.05)
            assert len(srv.seen) == 2, "the judge never asked"
            t0 = time.monotonic()
            proc.send_signal(signal.SIGINT)
            out, _ = proc.communicate(timeout=60)
            took = time.monotonic() - t0
            sent = len(srv.seen)
        finally:
            release.set()
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == 130 and "aborted" in out, out
    assert sent == 2, sent  # nothing sent after Ctrl-C
    assert took < 15, took
    rows = _verdicts(run)  # written for an interrupted run too
    assert len(rows) == 2
    assert all(r["status"] == "failed" and "interrupted" in r["problem"] for r in rows.values())
