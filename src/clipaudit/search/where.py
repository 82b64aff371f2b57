"""Safe ``--where`` filter expressions over a run's decision table.

``clipaudit search --where EXPR`` and ``clipaudit index --where EXPR`` select rows with a small
SQL-like language. It is read by a hand-written tokenizer and recursive-descent parser and
evaluated column-wise with ``pyarrow.compute``; nothing the user types is ever passed to
``eval``, ``exec`` or ``ast``, so an expression can only read the named columns of the table.

Grammar (keywords are case-insensitive)::

    expr      := and_expr ("or" and_expr)*
    and_expr  := not_expr ("and" not_expr)*
    not_expr  := "not"* primary
    primary   := "(" expr ")" | predicate
    predicate := column CMP literal | literal CMP column        CMP: = == != <> < <= > >=
               | column "is" ["not"] "null"
               | column ["not"] "in" "(" literal ("," literal)* [","] ")"   (or [ ... ])
               | literal ["not"] "in" column
               | column                                          (a boolean column: "= true")
    literal   := 'text' | "text" | [+-]number | true | false | null
    column    := name | `any name`

Strings take ``''`` (or ``\\'``) for a quote inside single quotes, and likewise for double
quotes. ``literal in column`` is membership when the column holds lists (``'nsfw' in
reasons``) and a case-sensitive substring test when it holds text (``'cat' in caption``).
``column = null`` means ``column is null`` and ``none`` may be written for ``null``. String
comparisons are case-sensitive. Arithmetic, calls, attribute access, chained comparisons
(``0.1 < a < 0.5``: write ``a > 0.1 and a < 0.5``) and comparisons between two columns are
refused, as are expressions over ``MAX_LENGTH`` characters or ``MAX_DEPTH`` parentheses deep.

Null semantics are two-valued, like Python filtering rather than SQL: every condition is
true or false for every row. A comparison, ``in`` or ``not in`` against a null value, or a
NaN float, is false, so ``alignment < 0.2`` and ``alignment >= 0.2`` are both false for a
null alignment while ``not (alignment < 0.2)`` is true for it. ``is null`` counts NaN as
null. ``column in (..., null)`` also matches null rows. Membership in a null list is false
both ways (``in`` and ``not in``); an empty list contains nothing, so ``not in`` is true for
it. A null boolean column is false when it stands alone. Column types are checked against
the table in ``Where.mask``: text is compared with quoted strings, numbers with numbers,
booleans with true/false.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from clipaudit.errors import ClipauditError

__all__ = ["MAX_DEPTH", "MAX_LENGTH", "Where", "parse_where"]

MAX_LENGTH = 10_000
"""Longest expression accepted, in characters."""

MAX_DEPTH = 64
"""Deepest parenthesis nesting accepted."""

_EXAMPLE = "write conditions like decision = 'keep' and 'nsfw' not in reasons"
_KEYWORDS = frozenset({"and", "or", "not", "in", "is", "null", "none", "true", "false"})
_CMP = {
    "=": "==",
    "==": "==",
    "!=": "!=",
    "<>": "!=",
    "<": "<",
    "<=": "<=",
    ">": ">",
    ">=": ">=",
}
_FLIP = {"==": "==", "!=": "!=", "<": ">", "<=": ">=", ">": "<", ">=": "<="}
_PC_CMP = {
    "==": pc.equal,
    "!=": pc.not_equal,
    "<": pc.less,
    "<=": pc.less_equal,
    ">": pc.greater,
    ">=": pc.greater_equal,
}
_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
    | (?P<num>(?:\d+\.\d*|\.\d+|\d+)(?:[eE][+-]?\d+)?)
    | (?P<ident>[^\W\d]\w*)
    | (?P<op><=|>=|<>|!=|==|=|<|>)
    | (?P<punct>[()\[\],+-])
    """,
    re.VERBOSE,
)
_NUMBER = re.compile(r"[+-]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][+-]?\d+)?")
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", "'": "'", '"': '"', "`": "`"}

Literal = str | int | float | bool | None


# ---------------------------------------------------------------------------- tokens


@dataclass(frozen=True)
class _Tok:
    kind: str  # ident, kw, str, num, op, punct, end
    value: Any
    pos: int
    text: str  # the source text, for messages


def _show(text: str, limit: int = 120) -> str:
    """The expression quoted for a message, shortened when long."""
    return repr(text if len(text) <= limit else text[: limit - 3] + "...")


def _syntax_error(text: str, detail: str, pos: int) -> ClipauditError:
    return ClipauditError(
        f"Cannot read the --where expression {_show(text)}: {detail} at character {pos + 1}; "
        f"{_EXAMPLE}."
    )


def _tokenize(text: str) -> list[_Tok]:
    toks: list[_Tok] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch in "'\"`":
            value, end = _scan_quoted(text, i)
            kind = "ident" if ch == "`" else "str"
            toks.append(_Tok(kind, value, i, text[i:end]))
            i = end
            continue
        m = _TOKEN.match(text, i)
        if m is None:
            raise _syntax_error(text, f"unexpected character {ch!r}", i)
        kind = m.lastgroup or ""
        raw = m.group()
        if kind == "num":
            if m.end() < n and (text[m.end()].isalnum() or text[m.end()] in "_."):
                raise _syntax_error(text, f"malformed number starting {raw!r}", i)
            number: int | float = int(raw) if raw.isdigit() else float(raw)
            toks.append(_Tok("num", number, i, raw))
        elif kind == "ident":
            low = raw.lower()
            if low in _KEYWORDS:
                toks.append(_Tok("kw", "null" if low == "none" else low, i, raw))
            else:
                toks.append(_Tok("ident", raw, i, raw))
        elif kind in ("op", "punct"):
            toks.append(_Tok(kind, raw, i, raw))
        i = m.end()
    toks.append(_Tok("end", None, n, "end of expression"))
    return toks


def _scan_quoted(text: str, start: int) -> tuple[str, int]:
    """Read a quoted string or `identifier` starting at ``start``; return (value, end)."""
    quote = text[start]
    out: list[str] = []
    i, n = start + 1, len(text)
    while i < n:
        ch = text[i]
        if ch == "\\" and i + 1 < n:
            nxt = text[i + 1]
            out.append(_ESCAPES.get(nxt, "\\" + nxt))
            i += 2
        elif ch == quote:
            if i + 1 < n and text[i + 1] == quote:  # SQL-style doubled quote
                out.append(quote)
                i += 2
            else:
                return "".join(out), i + 1
        else:
            out.append(ch)
            i += 1
    what = "column name" if quote == "`" else "string"
    raise _syntax_error(text, f"unterminated {what} (no closing {quote})", start)


# ---------------------------------------------------------------------------- tree


@dataclass(frozen=True)
class _Compare:
    column: str
    op: str  # one of _PC_CMP
    value: Literal


@dataclass(frozen=True)
class _IsNull:
    column: str
    negate: bool


@dataclass(frozen=True)
class _InSet:
    column: str
    values: tuple[Literal, ...]
    negate: bool


@dataclass(frozen=True)
class _Contains:
    value: Literal
    column: str
    negate: bool


@dataclass(frozen=True)
class _Truthy:
    column: str


@dataclass(frozen=True)
class _Not:
    operand: _Node


@dataclass(frozen=True)
class _BoolOp:
    op: str  # "and" | "or"
    operands: tuple[_Node, ...]


_Node = _Compare | _IsNull | _InSet | _Contains | _Truthy | _Not | _BoolOp


# ---------------------------------------------------------------------------- parser


def _known_list(columns: Iterable[str], limit: int = 40) -> str:
    names = sorted(columns)
    if not names:
        return "(none)"
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


@dataclass(frozen=True)
class _Operand:
    is_column: bool
    value: Literal  # the column name when is_column
    tok: _Tok


class _Parser:
    def __init__(self, text: str, columns: frozenset[str]) -> None:
        self.text = text
        self.columns = columns
        self.toks = _tokenize(text)
        self.i = 0
        self.depth = 0
        self.used: set[str] = set()

    # -- token helpers
    def peek(self, ahead: int = 0) -> _Tok:
        return self.toks[min(self.i + ahead, len(self.toks) - 1)]

    def advance(self) -> _Tok:
        tok = self.toks[self.i]
        if tok.kind != "end":
            self.i += 1
        return tok

    def is_kw(self, word: str, ahead: int = 0) -> bool:
        tok = self.peek(ahead)
        return tok.kind == "kw" and tok.value == word

    def is_punct(self, char: str, ahead: int = 0) -> bool:
        tok = self.peek(ahead)
        return tok.kind == "punct" and tok.value == char

    def error(self, detail: str, tok: _Tok | None = None) -> ClipauditError:
        tok = tok or self.peek()
        return _syntax_error(self.text, detail, tok.pos)

    def unexpected(self, tok: _Tok, expected: str) -> ClipauditError:
        found = "the end of the expression" if tok.kind == "end" else repr(tok.text)
        return self.error(f"expected {expected} but found {found}", tok)

    # -- grammar
    def parse(self) -> _Node:
        node = self.parse_or()
        tok = self.peek()
        if tok.kind == "op":
            raise self.error(f"chained comparison at {tok.text!r} (join comparisons with and)", tok)
        if tok.kind != "end":
            raise self.unexpected(tok, "and, or, or the end of the expression")
        return node

    def parse_or(self) -> _Node:
        operands = [self.parse_and()]
        while self.is_kw("or"):
            self.advance()
            operands.append(self.parse_and())
        return operands[0] if len(operands) == 1 else _BoolOp("or", tuple(operands))

    def parse_and(self) -> _Node:
        operands = [self.parse_not()]
        while self.is_kw("and"):
            self.advance()
            operands.append(self.parse_not())
        return operands[0] if len(operands) == 1 else _BoolOp("and", tuple(operands))

    def parse_not(self) -> _Node:
        count = 0
        while self.is_kw("not"):
            self.advance()
            count += 1
        node = self.parse_primary()
        return _Not(node) if count % 2 else node

    def parse_primary(self) -> _Node:
        if self.is_punct("("):
            open_tok = self.advance()
            self.depth += 1
            if self.depth > MAX_DEPTH:
                raise ClipauditError(
                    f"The --where expression {_show(self.text)} nests parentheses more than "
                    f"{MAX_DEPTH} deep; write a flatter expression."
                )
            node = self.parse_or()
            if not self.is_punct(")"):
                tok = self.peek()
                if tok.kind == "op":
                    raise self.error(
                        f"chained comparison at {tok.text!r} (join comparisons with and)", tok
                    )
                raise self.unexpected(tok, f"')' to close the '(' at character {open_tok.pos + 1}")
            self.advance()
            self.depth -= 1
            return node
        return self.parse_predicate()

    def parse_operand(self, expected: str) -> _Operand:
        tok = self.advance()
        if tok.kind == "ident":
            return _Operand(True, tok.value, tok)
        if tok.kind in ("str", "num"):
            return _Operand(False, tok.value, tok)
        if tok.kind == "kw" and tok.value in ("true", "false", "null"):
            value = {"true": True, "false": False, "null": None}[tok.value]
            return _Operand(False, value, tok)
        if tok.kind == "punct" and tok.value in "+-" and self.peek().kind == "num":
            num = self.advance()
            value = -num.value if tok.value == "-" else num.value
            return _Operand(False, value, tok)
        raise self.unexpected(tok, expected)

    def column(self, operand: _Operand) -> str:
        name = str(operand.value)
        if name not in self.columns:
            close = difflib.get_close_matches(name, sorted(self.columns), n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ClipauditError(
                f"Unknown column {name!r} in the --where expression {_show(self.text)}; "
                f"{hint}known columns: {_known_list(self.columns)}."
            )
        self.used.add(name)
        return name

    def parse_predicate(self) -> _Node:
        left = self.parse_operand("a column, a value or '('")
        tok = self.peek()
        if tok.kind == "op":
            self.advance()
            right = self.parse_operand(f"a value after {tok.text!r}")
            return self.comparison(left, _CMP[tok.value], right, tok)
        if self.is_kw("is"):
            self.advance()
            negate = False
            if self.is_kw("not"):
                self.advance()
                negate = True
            if not self.is_kw("null"):
                raise self.unexpected(self.peek(), "null after 'is' or 'is not'")
            self.advance()
            if not left.is_column:
                raise self.error("'is null' needs a column on its left", left.tok)
            return _IsNull(self.column(left), negate)
        if self.is_kw("in") or (self.is_kw("not") and self.is_kw("in", 1)):
            negate = self.is_kw("not")
            if negate:
                self.advance()
            in_tok = self.advance()
            if left.is_column:
                name = self.column(left)
                return _InSet(name, self.parse_value_list(in_tok), negate)
            nxt = self.peek()
            if nxt.kind != "ident":
                raise self.unexpected(
                    nxt, "a list or text column after 'in' (like 'nsfw' in reasons)"
                )
            right = self.parse_operand("a column")
            return _Contains(left.value, self.column(right), negate)
        if left.is_column:
            return _Truthy(self.column(left))
        raise self.error(
            f"the value {left.tok.text!r} alone is not a condition (compare it with a column)",
            left.tok,
        )

    def comparison(self, left: _Operand, op: str, right: _Operand, op_tok: _Tok) -> _Node:
        if left.is_column and right.is_column:
            if right.value not in self.columns:
                self.column(left)
                raise ClipauditError(
                    f"Unknown column {right.value!r} in the --where expression "
                    f"{_show(self.text)}; to compare with the text {right.value} put it in "
                    f"quotes, like {left.value} {op_tok.text} '{right.value}'."
                )
            raise ClipauditError(
                f"The --where expression {_show(self.text)} compares two columns "
                f"({left.value} and {right.value}), which is not supported; compare a column "
                f"with a value, like {left.value} {op_tok.text} 'keep' or {left.value} > 0.3."
            )
        if not left.is_column and not right.is_column:
            raise self.error(
                f"{left.tok.text} {op_tok.text} {right.tok.text} compares two values "
                "(one side must be a column)",
                left.tok,
            )
        if not left.is_column:
            left, right, op = right, left, _FLIP[op]
        name = self.column(left)
        if right.value is None:
            if op not in ("==", "!="):
                raise self.error(
                    f"{op_tok.text!r} cannot compare with null (use is null or is not null)",
                    op_tok,
                )
            return _IsNull(name, negate=op == "!=")
        return _Compare(name, op, right.value)

    def parse_value_list(self, in_tok: _Tok) -> tuple[Literal, ...]:
        if self.is_punct("("):
            close = ")"
        elif self.is_punct("["):
            close = "]"
        else:
            nxt = self.peek()
            if nxt.kind == "ident":
                raise self.error(
                    "'in' between two columns (use a list of values after 'in', like "
                    "decision in ('keep', 'flag'))",
                    nxt,
                )
            raise self.unexpected(nxt, "a list of values after 'in' like ('keep', 'flag')")
        self.advance()
        values: list[Literal] = []
        while not self.is_punct(close):
            tok = self.peek()
            if tok.kind == "ident":
                raise self.error(
                    f"{tok.text!r} in a list after 'in' is not a value (quote text like "
                    f"('{tok.text}'))",
                    tok,
                )
            values.append(self.parse_operand(f"a value or {close!r}").value)
            if self.is_punct(","):
                self.advance()
            elif not self.is_punct(close):
                raise self.unexpected(self.peek(), f"',' or {close!r} in the list after 'in'")
        self.advance()
        return tuple(values)


# ---------------------------------------------------------------------------- evaluation


def _kind(t: pa.DataType) -> str:
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return "string"
    if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t):
        return "number"
    if pa.types.is_boolean(t):
        return "bool"
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        return "list"
    if pa.types.is_null(t):
        return "null"
    return "other"


def _plain(arr: Any) -> Any:
    """Decode dictionary and string-view arrays to types every kernel accepts."""
    t = arr.type
    if pa.types.is_dictionary(t):
        arr = arr.cast(t.value_type)
        t = arr.type
    if pa.types.is_string_view(t):
        arr = arr.cast(pa.large_string())
    return arr


def _bools(arr: Any) -> np.ndarray:
    """A boolean Arrow result as a writable numpy array, nulls read as false."""
    out = pc.fill_null(arr, False).to_numpy(zero_copy_only=False)
    return np.array(out, dtype=bool)


def _describe(value: Literal) -> str:
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, str):
        return f"the text {value!r}"
    return f"the number {value!r}"


def _scalar(value: Literal, t: pa.DataType) -> pa.Scalar:
    if isinstance(value, str):
        return pa.scalar(value, type=t if _kind(t) == "string" else pa.string())
    if isinstance(value, int) and not isinstance(value, bool) and not -(2**63) <= value < 2**63:
        return pa.scalar(float(value))
    return pa.scalar(value)


class _Evaluator:
    def __init__(self, table: pa.Table, text: str) -> None:
        self.table = table
        self.text = text
        self.n = table.num_rows
        self.cache: dict[str, Any] = {}

    def col(self, name: str) -> Any:
        if name not in self.cache:
            self.cache[name] = _plain(self.table.column(name))
        return self.cache[name]

    def check(self, name: str, t: pa.DataType, value: Literal, *, elements: bool = False) -> None:
        """Refuse a literal whose type cannot meet the column's values (or list elements)."""
        if value is None:
            return
        kind = _kind(t)
        want = ""
        if kind == "string" and not isinstance(value, str):
            shown = str(value).lower() if isinstance(value, bool) else str(value)
            example = f"'{shown}' in {name}" if elements else f"{name} = '{shown}'"
            want = f"put the value in quotes, like {example}"
        elif kind == "number" and isinstance(value, (str, bool)):
            number = value if isinstance(value, str) and _NUMBER.fullmatch(value) else "0.3"
            example = f"{number} in {name}" if elements else f"{name} >= {number}"
            want = f"write a number without quotes, like {example}"
        elif kind == "bool" and not isinstance(value, bool):
            example = f"true in {name}" if elements else f"{name} = true"
            want = f"compare it with true or false, like {example}"
        if want:
            holder = f"The lists in column {name!r} hold" if elements else f"Column {name!r} holds"
            raise ClipauditError(
                f"{holder} {t} values but the --where expression {_show(self.text)} compares "
                f"{'them' if elements else 'it'} with {_describe(value)}; {want}."
            )
        if kind == "list" and elements:
            raise ClipauditError(
                f"The lists in column {name!r} hold lists ({t}), which the --where expression "
                f"{_show(self.text)} cannot search; filter on a flat list column instead."
            )
        if kind == "list":
            raise ClipauditError(
                f"Column {name!r} holds lists ({t}) so the --where expression "
                f"{_show(self.text)} cannot compare it with a value; test membership instead, "
                f"like 'nsfw' in {name}."
            )
        if kind == "other":
            raise ClipauditError(
                f"Column {name!r} has type {t}, which the --where expression "
                f"{_show(self.text)} cannot filter on; filter on a text, number, boolean or "
                "list column instead."
            )

    def valid(self, arr: Any) -> np.ndarray:
        """Rows whose value is neither null nor NaN."""
        if _kind(arr.type) == "null":
            return np.zeros(len(arr), dtype=bool)
        if pa.types.is_floating(arr.type):
            return ~_bools(pc.is_null(arr, nan_is_null=True))
        return ~_bools(pc.is_null(arr))

    def compare(self, arr: Any, op: str, value: Literal) -> np.ndarray:
        """``arr OP value`` for a non-null value, null and NaN rows false."""
        if _kind(arr.type) == "null":
            return np.zeros(len(arr), dtype=bool)
        out = _bools(_PC_CMP[op](arr, _scalar(value, arr.type)))
        if op == "!=":
            out &= self.valid(arr)
        return out

    def eval(self, node: _Node) -> np.ndarray:
        if isinstance(node, _BoolOp):
            result = self.eval(node.operands[0])
            for operand in node.operands[1:]:
                if node.op == "and":
                    result &= self.eval(operand)
                else:
                    result |= self.eval(operand)
            return result
        if isinstance(node, _Not):
            return ~self.eval(node.operand)
        if isinstance(node, _Compare):
            arr = self.col(node.column)
            self.check(node.column, arr.type, node.value)
            return self.compare(arr, node.op, node.value)
        if isinstance(node, _IsNull):
            arr = self.col(node.column)
            null = ~self.valid(arr) if _kind(arr.type) != "list" else _bools(pc.is_null(arr))
            return ~null if node.negate else null
        if isinstance(node, _InSet):
            return self.in_set(node)
        if isinstance(node, _Contains):
            return self.contains(node)
        if isinstance(node, _Truthy):
            arr = self.col(node.column)
            kind = _kind(arr.type)
            if kind == "null":
                return np.zeros(self.n, dtype=bool)
            if kind != "bool":
                example = {"string": "= 'keep'", "number": "> 0"}.get(kind, "is not null")
                raise ClipauditError(
                    f"Column {node.column!r} holds {arr.type} values, not true/false, so it "
                    f"cannot stand alone in the --where expression {_show(self.text)}; compare "
                    f"it with a value, like {node.column} {example}."
                )
            return _bools(arr)
        raise TypeError(f"unknown --where node {node!r}")  # pragma: no cover

    def in_set(self, node: _InSet) -> np.ndarray:
        arr = self.col(node.column)
        kind = _kind(arr.type)
        if kind == "list":
            raise ClipauditError(
                f"Column {node.column!r} holds lists ({arr.type}) so the --where expression "
                f"{_show(self.text)} cannot look it up in a list of values; test membership "
                f"one value at a time, like 'nsfw' in {node.column}."
            )
        for value in node.values:
            self.check(node.column, arr.type, value)
        values = [v for v in dict.fromkeys(node.values) if v is not None]
        hit = np.zeros(self.n, dtype=bool)
        if kind == "string" and values:
            hit = _bools(pc.is_in(arr, value_set=pa.array(values, type=arr.type)))
        else:
            for value in values:
                hit |= self.compare(arr, "==", value)
        valid = self.valid(arr)
        if node.negate:
            return valid & ~hit
        if any(v is None for v in node.values):  # null among the values: null rows match
            hit |= ~valid
        return hit

    def contains(self, node: _Contains) -> np.ndarray:
        arr = self.col(node.column)
        kind = _kind(arr.type)
        if kind == "string":
            if not isinstance(node.value, str):
                raise ClipauditError(
                    f"Column {node.column!r} holds text, so the --where expression "
                    f"{_show(self.text)} cannot find {_describe(node.value)} in it; 'in' on a "
                    f"text column finds a quoted substring, like 'cat' in {node.column}."
                )
            hit = _bools(pc.match_substring(arr, node.value))
        elif kind == "list":
            hit = self.list_contains(node.column, arr, node.value)
        elif kind == "null":
            return np.zeros(self.n, dtype=bool)
        else:
            raise ClipauditError(
                f"Column {node.column!r} holds {arr.type} values, so the --where expression "
                f"{_show(self.text)} cannot test {_describe(node.value)} in it; 'in' works on "
                "list and text columns (like 'nsfw' in reasons), so compare other columns with "
                "=, <, > or is null."
            )
        if node.negate:
            return self.valid(arr) & ~hit
        return hit

    def list_contains(self, name: str, arr: Any, value: Literal) -> np.ndarray:
        """Rows whose list holds ``value`` (a null ``value`` finds null elements)."""
        out = np.zeros(self.n, dtype=bool)
        offset = 0
        for chunk in arr.chunks:
            flat = _plain(pc.list_flatten(chunk))
            if offset == 0:
                self.check(name, flat.type, value, elements=True)
            if len(flat):
                if value is None:
                    hits = _bools(pc.is_null(flat, nan_is_null=True))
                else:
                    hits = self.compare(flat, "==", value)
                # list_flatten skips null lists; list_value_length is null for them, so the
                # parent of each flattened element is recovered from the lengths alone.
                lengths = pc.fill_null(pc.list_value_length(chunk), 0).to_numpy()
                parents = np.repeat(np.arange(len(chunk)), lengths.astype(np.int64))
                out[offset + parents[hits]] = True
            offset += len(chunk)
        return out


# ---------------------------------------------------------------------------- public API


@dataclass(frozen=True)
class Where:
    """A parsed ``--where`` expression; ``mask(table)`` selects rows of a table."""

    text: str
    columns: frozenset[str]
    _node: _Node = field(repr=False, compare=False)

    def mask(self, table: pa.Table) -> np.ndarray:
        """One bool per row of ``table``: true where the expression holds."""
        missing = sorted(self.columns - set(table.column_names))
        if missing:
            raise ClipauditError(
                f"The --where expression {_show(self.text)} reads column {missing[0]!r}, which "
                f"this table lacks; known columns: {_known_list(table.column_names)}."
            )
        return _Evaluator(table, self.text).eval(self._node)

    def __str__(self) -> str:
        return self.text


def parse_where(text: str, columns: Iterable[str]) -> Where:
    """Parse ``text``, checking every column it names against ``columns``."""
    if not isinstance(text, str) or not text.strip():
        raise ClipauditError(
            "The --where expression is empty; give a condition like decision = 'keep'."
        )
    if len(text) > MAX_LENGTH:
        raise ClipauditError(
            f"The --where expression is {len(text):,} characters long, over the limit of "
            f"{MAX_LENGTH:,}; write a shorter condition."
        )
    parser = _Parser(text, frozenset(columns))
    node = parser.parse()
    return Where(text=text, columns=frozenset(parser.used), _node=node)
