"""Kubernetes label and field selectors.

Label selectors support equality (``k=v``, ``k==v``, ``k!=v``), set-based
(``k in (a,b)``, ``k notin (a,b)``) and existence (``k``, ``!k``)
requirements, comma-separated and AND-ed. Field selectors support
``=``/``==``/``!=`` on dotted paths such as ``metadata.name`` and
``status.phase``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from sandbox.cluster import ClusterError

Matcher = Callable[[dict[str, Any]], bool]

_KEY_RE = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
_VALUE_RE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_SET_RE = re.compile(r"^\s*(\S+)\s+(in|notin)\s*\((.*)\)\s*$")


def _bad(selector: str, why: str) -> ClusterError:
    return ClusterError(400, "BadRequest", f"unable to parse requirement: {why} in {selector!r}")


def _split_top(selector: str) -> list[str]:
    """Split on commas that are not inside parentheses."""
    parts: list[str] = []
    depth = 0
    cur: list[str] = []
    for ch in selector:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return [p.strip() for p in parts if p.strip()]


def _check_key(key: str, selector: str) -> str:
    if not _KEY_RE.match(key) or len(key.rsplit("/", 1)[-1]) > 63:
        raise _bad(selector, f"invalid label key {key!r}")
    return key


def _check_value(value: str, selector: str) -> str:
    if len(value) > 63 or not _VALUE_RE.match(value):
        raise _bad(selector, f"invalid label value {value!r}")
    return value


def parse_label_selector(selector: str | None) -> Matcher | None:
    """Compile a label selector string into a predicate over objects.

    Returns ``None`` for an empty selector (matches everything). Raises
    ``ClusterError(400, BadRequest)`` on syntax errors.
    """
    if not selector or not selector.strip():
        return None
    reqs: list[Callable[[dict[str, str]], bool]] = []
    for part in _split_top(selector):
        m = _SET_RE.match(part)
        if m:
            key = _check_key(m.group(1), selector)
            values = frozenset(
                _check_value(v.strip(), selector) for v in m.group(3).split(",")
            )
            if m.group(2) == "in":
                reqs.append(lambda lb, k=key, vs=values: k in lb and lb[k] in vs)
            else:
                reqs.append(lambda lb, k=key, vs=values: k not in lb or lb[k] not in vs)
            continue
        if "!=" in part:
            key, value = (s.strip() for s in part.split("!=", 1))
            key = _check_key(key, selector)
            value = _check_value(value, selector)
            reqs.append(lambda lb, k=key, v=value: lb.get(k) != v)
            continue
        if "=" in part:
            sep = "==" if "==" in part else "="
            key, value = (s.strip() for s in part.split(sep, 1))
            key = _check_key(key, selector)
            value = _check_value(value, selector)
            reqs.append(lambda lb, k=key, v=value: lb.get(k) == v)
            continue
        if part.startswith("!"):
            key = _check_key(part[1:].strip(), selector)
            reqs.append(lambda lb, k=key: k not in lb)
            continue
        key = _check_key(part, selector)
        reqs.append(lambda lb, k=key: k in lb)

    def match(obj: dict[str, Any]) -> bool:
        labels = (obj.get("metadata") or {}).get("labels") or {}
        return all(r(labels) for r in reqs)

    return match


def _field_value(obj: dict[str, Any], path: str) -> str:
    cur: Any = obj
    for part in path.split("."):
        if not isinstance(cur, dict):
            return ""
        cur = cur.get(part)
        if cur is None:
            return ""
    if isinstance(cur, bool):
        return "true" if cur else "false"
    return str(cur)


def parse_field_selector(selector: str | None) -> Matcher | None:
    """Compile a field selector (``path=value``, ``path==value``, ``path!=value``)."""
    if not selector or not selector.strip():
        return None
    reqs: list[Callable[[dict[str, Any]], bool]] = []
    for part in _split_top(selector):
        if "!=" in part:
            path, value = (s.strip() for s in part.split("!=", 1))
            reqs.append(lambda o, p=path, v=value: _field_value(o, p) != v)
        elif "=" in part:
            sep = "==" if "==" in part else "="
            path, value = (s.strip() for s in part.split(sep, 1))
            reqs.append(lambda o, p=path, v=value: _field_value(o, p) == v)
        else:
            raise ClusterError(
                400, "BadRequest", f"invalid selector: {selector!r}; can't understand {part!r}"
            )

    def match(obj: dict[str, Any]) -> bool:
        return all(r(obj) for r in reqs)

    return match


def combine(*matchers: Matcher | None) -> Matcher | None:
    """AND together the non-None matchers (None if there are none)."""
    ms = [m for m in matchers if m is not None]
    if not ms:
        return None
    if len(ms) == 1:
        return ms[0]
    return lambda obj: all(m(obj) for m in ms)
