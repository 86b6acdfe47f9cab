"""Argo's ``{{...}}`` substitution and the small expression language of ``when``.

Substitution mirrors Argo's ``template.Replace`` with unresolved tags allowed:
known keys are replaced, unknown ``{{...}}`` tags are left untouched (workflows
compiled from some KFP samples carry literal ones such as ``{{kfp-default-bucket}}``).
``when`` is evaluated like govaluate for the forms KFP v1 emits: quoted strings,
numbers, bare words, ``== != < > <= >=``, ``&& || !`` and parentheses.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

_TAG = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")


def substitute(value: Any, env: Mapping[str, str]) -> Any:
    """Return ``value`` (str / list / dict, recursively) with known ``{{key}}`` tags replaced."""
    if isinstance(value, str):
        if "{{" not in value:
            return value
        return _TAG.sub(lambda m: env.get(m.group(1), m.group(0)), value)
    if isinstance(value, list):
        return [substitute(v, env) for v in value]
    if isinstance(value, dict):
        return {k: substitute(v, env) for k, v in value.items()}
    return value


def unresolved_tags(value: Any, prefix: str) -> list[str]:
    """The ``{{...}}`` tag bodies starting with ``prefix`` left in ``value``."""
    found: list[str] = []
    if isinstance(value, str):
        found.extend(m.group(1) for m in _TAG.finditer(value) if m.group(1).startswith(prefix))
    elif isinstance(value, list):
        for v in value:
            found.extend(unresolved_tags(v, prefix))
    elif isinstance(value, dict):
        for v in value.values():
            found.extend(unresolved_tags(v, prefix))
    return found


def go_json(value: Any) -> str:
    """JSON the way Go's encoding/json prints a decoded value (compact, sorted map keys)."""
    return json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False)


def item_string(value: Any) -> str:
    """``fmt.Sprintf("%v", item)`` for a loop item: strings bare, others as JSON."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return go_json(value)


# --------------------------------------------------------------------- when
_TOKEN = re.compile(
    r"""\s*(?:
        (?P<str>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
      | (?P<num>-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?(?![\w.]))
      | (?P<op>==|!=|<=|>=|&&|\|\||=~|[<>!()])
      | (?P<word>[^\s()<>=!&|"']+)
    )""",
    re.VERBOSE,
)


class ExpressionError(ValueError):
    """A ``when``/``depends`` expression that cannot be evaluated."""


def _tokenize(text: str) -> list[tuple[str, Any]]:
    tokens: list[tuple[str, Any]] = []
    pos = 0
    text = text.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise ExpressionError(f"cannot parse {text!r} at {pos}")
        pos = m.end()
        if m.group("str") is not None:
            tokens.append(("val", m.group("str")[1:-1]))
        elif m.group("num") is not None:
            tokens.append(("val", float(m.group("num"))))
        elif m.group("op") is not None:
            tokens.append(("op", m.group("op")))
        else:
            word = m.group("word")
            low = word.lower()
            if low in ("true", "false"):
                tokens.append(("val", low == "true"))
            else:
                tokens.append(("val", word))
        while pos < len(text) and text[pos].isspace():
            pos += 1
    return tokens


class _Parser:
    def __init__(self, tokens: list[tuple[str, Any]]) -> None:
        self.tokens = tokens
        self.i = 0

    def peek(self) -> tuple[str, Any] | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self) -> tuple[str, Any]:
        tok = self.peek()
        if tok is None:
            raise ExpressionError("unexpected end of expression")
        self.i += 1
        return tok

    def parse(self) -> Any:
        value = self.or_()
        if self.peek() is not None:
            raise ExpressionError(f"unexpected token {self.peek()!r}")
        return value

    def or_(self) -> Any:
        left = self.and_()
        while self.peek() == ("op", "||"):
            self.take()
            right = self.and_()
            left = _truthy(left) or _truthy(right)
        return left

    def and_(self) -> Any:
        left = self.cmp()
        while self.peek() == ("op", "&&"):
            self.take()
            right = self.cmp()
            left = _truthy(left) and _truthy(right)
        return left

    def cmp(self) -> Any:
        left = self.unary()
        tok = self.peek()
        if tok and tok[0] == "op" and tok[1] in ("==", "!=", "<", ">", "<=", ">=", "=~"):
            self.take()
            right = self.unary()
            return _compare(tok[1], left, right)
        return left

    def unary(self) -> Any:
        tok = self.take()
        if tok == ("op", "!"):
            return not _truthy(self.unary())
        if tok == ("op", "("):
            value = self.or_()
            if self.take() != ("op", ")"):
                raise ExpressionError("missing )")
            return value
        if tok[0] == "val":
            return tok[1]
        raise ExpressionError(f"unexpected token {tok!r}")


def _truthy(v: Any) -> bool:
    if isinstance(v, bool):
        return v
    raise ExpressionError(f"value {v!r} is not a boolean")


def _num(v: Any) -> float | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, float | int):
        return float(v)
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def _compare(op: str, a: Any, b: Any) -> bool:
    if op == "=~":
        return re.search(str(b), str(a)) is not None
    na, nb = _num(a), _num(b)
    if op in ("==", "!="):
        if isinstance(a, bool) or isinstance(b, bool) or (
            isinstance(a, float) and isinstance(b, float)
        ):
            equal = a == b
        else:
            equal = _as_text(a) == _as_text(b)
        return equal if op == "==" else not equal
    if na is None or nb is None:
        raise ExpressionError(f"cannot compare {a!r} {op} {b!r}")
    return {"<": na < nb, ">": na > nb, "<=": na <= nb, ">=": na >= nb}[op]


def _as_text(v: Any) -> str:
    if isinstance(v, float):
        return repr(v) if not v.is_integer() else str(int(v))
    return str(v)


def evaluate(expression: str) -> bool:
    """Evaluate a substituted ``when`` expression; raises ExpressionError if malformed."""
    tokens = _tokenize(expression)
    if not tokens:
        raise ExpressionError("empty expression")
    result = _Parser(tokens).parse()
    if not isinstance(result, bool):
        raise ExpressionError(f"{expression!r} does not evaluate to a boolean")
    return result


_DEP_WORD = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_]*)(?:\.(Succeeded|Failed|Errored|Skipped|"
                       r"Omitted|Daemoned|AnySucceeded|AllFailed))?")


def evaluate_depends(expression: str, phases: Mapping[str, str]) -> bool:
    """Evaluate a DAG ``depends`` expression given each task's node phase.

    A bare ``A`` means ``A.Succeeded || A.Skipped || A.Daemoned``.
    """

    def repl(m: re.Match[str]) -> str:
        task, result = m.group(1), m.group(2)
        phase = phases.get(task, "")
        if result is None:
            ok = phase in ("Succeeded", "Skipped")
        elif result in ("Errored",):
            ok = phase == "Error"
        elif result == "AnySucceeded":
            ok = phase == "Succeeded"
        elif result == "AllFailed":
            ok = phase in ("Failed", "Error")
        else:
            ok = phase == result
        return "true" if ok else "false"

    return evaluate(_DEP_WORD.sub(repl, expression))


def depends_tasks(expression: str) -> list[str]:
    """Task names referenced by a ``depends`` expression, in order."""
    seen: list[str] = []
    for m in _DEP_WORD.finditer(expression):
        if m.group(1) not in ("true", "false") and m.group(1) not in seen:
            seen.append(m.group(1))
    return seen
