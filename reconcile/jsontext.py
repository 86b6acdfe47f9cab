"""Bounded JSON parsing: every JSON text read from a pod or Workflow goes through `parse_json`.

Python's parser recurses once per nesting level, so ~1,000 brackets (3 KB) raise
RecursionError -- not a ValueError -- and anything recursive that later walks a
deep-but-parsed value (json.dumps, substitution) fails the same way. The rules
(docs/values.md): a text larger than its byte bound, nested deeper than
MAX_JSON_DEPTH, or not valid JSON is one PodError naming what was being read.
Duplicate keys keep the last value, as every JSON reader in Kubernetes does.
"""

from __future__ import annotations

import json
from typing import Any

from reconcile.errors import PodError, Reason

# Argo's templates and KFP's component specs nest about ten levels; a hundred leaves room
# for any real input and stays far below Python's recursion limit.
MAX_JSON_DEPTH = 100


def json_depth_exceeds(value: Any, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether `value` nests lists/objects more than `limit` levels deep (iterative, no recursion)."""
    # Level by level: every pod and template is walked once per pass, and a list
    # comprehension per container costs half of a stack of (item, depth) pairs.
    level = [value] if isinstance(value, dict | list) else []
    depth = 1
    while level:
        if depth > limit:
            return True
        deeper: list[Any] = []
        for item in level:
            children = item.values() if isinstance(item, dict) else item
            deeper += [child for child in children if isinstance(child, dict | list)]
        level = deeper
        depth += 1
    return False


def parse_json(text: Any, what: str, reason: Reason, max_bytes: int) -> Any:
    """`json.loads(text)`, or one PodError(`reason`) naming `what` and the problem.

    Raises PodError(VALUE_TOO_LARGE) above `max_bytes` (UTF-8). Never raises anything else,
    whatever `text` is.
    """
    if not isinstance(text, str):
        raise PodError(reason, f"{what} is not a string")
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > max_bytes:
        raise PodError(Reason.VALUE_TOO_LARGE, f"{what} is {size} bytes; the limit is {max_bytes} bytes")
    try:
        value = json.loads(text)
    except RecursionError:
        raise PodError(reason, f"{what} is nested deeper than {MAX_JSON_DEPTH} levels") from None
    except ValueError as exc:  # JSONDecodeError, and integers of more than 4,300 digits
        raise PodError(reason, f"{what} is not valid JSON ({_short(str(exc))})") from None
    # Each level opens a bracket of its own: a text with few brackets cannot be too deep.
    if text.count("{") + text.count("[") > MAX_JSON_DEPTH and json_depth_exceeds(value):
        raise PodError(reason, f"{what} is nested deeper than {MAX_JSON_DEPTH} levels")
    return value


def _short(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
