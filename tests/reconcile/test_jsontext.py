"""Bounded JSON: the depth rule at its edges, and the bracket count that spares the walk."""

from __future__ import annotations

import json
from typing import Any

import pytest

from reconcile.errors import PodError, Reason
from reconcile.jsontext import MAX_JSON_DEPTH, json_depth_exceeds, parse_json


def nested(depth: int, leaf: Any = 1) -> Any:
    """`depth` levels of alternating objects and lists around `leaf`."""
    value = leaf
    for level in range(depth):
        value = {"k": value} if level % 2 else [value, 2]
    return value


@pytest.mark.parametrize(
    ("value", "limit", "exceeds"),
    [
        (1, 0, False),  # a scalar has no depth
        ("[[[", 0, False),
        ([], 0, True),
        ([], 1, False),
        ({"a": [1, {"b": []}]}, 4, False),
        ({"a": [1, {"b": []}]}, 3, True),
        ([1, [2, [3]], {"x": {}}], 3, False),  # the deepest branch decides, not the first
        ([{"x": {"y": {}}}, [1]], 3, True),
        (nested(MAX_JSON_DEPTH), MAX_JSON_DEPTH, False),
        (nested(MAX_JSON_DEPTH + 1), MAX_JSON_DEPTH, True),
        (nested(5000), MAX_JSON_DEPTH, True),  # no recursion, whatever the depth
    ],
)
def test_depth_is_that_of_the_deepest_container(value: Any, limit: int, exceeds: bool) -> None:
    assert json_depth_exceeds(value, limit) is exceeds


@pytest.mark.parametrize(
    ("text", "refused"),
    [
        (json.dumps(nested(MAX_JSON_DEPTH)), False),
        (json.dumps(nested(MAX_JSON_DEPTH + 1)), True),
        # Many brackets but shallow: the count alone does not refuse a text.
        (json.dumps([[i] for i in range(3 * MAX_JSON_DEPTH)]), False),
        # Brackets inside strings count towards the cheap bound, never towards depth.
        (json.dumps({"s": "[" * (2 * MAX_JSON_DEPTH)}), False),
    ],
)
def test_parse_json_refuses_only_what_nests_too_deep(text: str, refused: bool) -> None:
    if refused:
        with pytest.raises(PodError, match="nested deeper than 100 levels"):
            parse_json(text, "the template", Reason.MALFORMED_TEMPLATE, 1 << 20)
    else:
        assert parse_json(text, "the template", Reason.MALFORMED_TEMPLATE, 1 << 20) == json.loads(text)
