"""Answers of a multimodal judge: the strict parse, and the run's append-only answer log.

The log (``RUN/judge/answers.jsonl``) gets one line per finished request, written and
flushed as it arrives, so a killed run keeps what it paid for; its key is the sha256 of the
image bytes sent, the rubric's text, the model and the endpoint, so a re-run asks again only
what it has no answer for. Raw answers are stored as text beside the parsed verdict and are
never executed or rendered unescaped.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

MAX_ANSWER_CHARS = 4000
_FENCE = re.compile(r"^```(?:json)?\s*(\{.*\})\s*```$", re.S)


def answer_key(image: bytes, rubric_text: str, model: str, endpoint: str) -> str:
    h = hashlib.sha256()
    for part in (image, rubric_text.encode(), model.encode(), endpoint.encode()):
        h.update(len(part).to_bytes(8, "little"))
        h.update(part)
    return h.hexdigest()


class _Repeated(Exception):
    pass


def _no_repeats(pairs: list[tuple[str, object]]) -> dict[str, object]:
    keys = [k for k, _ in pairs]
    if "answer" in keys and keys.count("answer") > 1:
        raise _Repeated
    return dict(pairs)


def parse_answer(text: str | None, choices: list[str]) -> tuple[str | None, str | None]:
    """(verdict, problem): the answer when ``text`` is exactly a JSON object whose ``answer``
    is one of ``choices`` (case-insensitive; optionally inside one ```json fence), else
    (None, why)."""
    if text is None:
        return None, "empty answer"
    if len(text) > MAX_ANSWER_CHARS:
        return None, f"oversized answer ({len(text)} characters)"
    body = text.strip()
    fenced = _FENCE.match(body)
    if fenced:
        body = fenced.group(1)
    try:
        obj = json.loads(body, object_pairs_hook=_no_repeats)
    except _Repeated:
        # {"answer": "yes", "answer": "no"}: JSON readers keep either; no verdict to trust.
        return None, "the field 'answer' given twice"
    except ValueError:
        return None, "not JSON"
    if not isinstance(obj, dict) or not isinstance(obj.get("answer"), str):
        return None, "no string field 'answer'"
    got = obj["answer"].strip().lower()
    for c in choices:
        if got == c.lower():
            return c, None
    return None, f"answer not one of {choices}"


@dataclass
class Answer:
    key: str
    id: str
    rubric: str
    model: str
    endpoint: str
    status: str  # ok | unparseable | failed
    verdict: str | None = None
    problem: str | None = None
    raw: str | None = None
    attempts: int = 0
    seconds: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    structured: bool = False  # the server accepted response_format json_schema
    order: list[str] = field(default_factory=list)  # choices in the order shown

    def line(self) -> str:
        d = asdict(self)
        if d["raw"] is not None:
            d["raw"] = d["raw"][:MAX_ANSWER_CHARS]
        return json.dumps(d, ensure_ascii=False)


class AnswerLog:
    """``judge/answers.jsonl``: read once, appended line by line."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / "answers.jsonl"
        self.done: dict[str, dict[str, Any]] = {}  # key → the answer (ok or unparseable)
        # (id, rubric) → its latest failure, so verdicts.parquet can list what got no answer
        self.failed: dict[tuple[str, str], dict[str, Any]] = {}
        if self.path.is_file():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue  # a line cut by a kill mid-write
                if not isinstance(rec, dict):
                    continue
                if rec.get("status") in ("ok", "unparseable"):
                    self.done[str(rec["key"])] = rec
                elif rec.get("status") == "failed":
                    self.failed[(str(rec["id"]), str(rec["rubric"]))] = rec
        self._fh = self.path.open("a", encoding="utf-8")

    def add(self, answer: Answer) -> None:
        self._fh.write(answer.line() + "\n")
        self._fh.flush()
        if answer.status in ("ok", "unparseable"):
            self.done[answer.key] = asdict(answer)
        else:
            self.failed[(answer.id, answer.rubric)] = asdict(answer)

    def close(self) -> None:
        self._fh.close()
