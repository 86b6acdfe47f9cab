"""What MLMD and its SQL backends can hold: every value is checked here before it is sent.

MLMD's C++ core aborts the whole process (SIGABRT) on a property Value with no field
set; its Python client raises UnicodeEncodeError on a lone surrogate; SQLite and MySQL
cut a string at its first NUL; both print doubles with six decimals; MySQL keeps
`int_value` in a 32-bit INT, names and external ids in VARCHAR(255) and URIs and event
path keys in TEXT (65,535 bytes). The rules below (docs/values.md) make every value
either round-trip exactly on every backend or be refused, for that one step, with a
PodError(INVALID_VALUE or VALUE_TOO_LARGE) naming the field. Pure: no I/O.
"""

from __future__ import annotations

import math
import re
from typing import Any

from reconcile import conventions as c
from reconcile.errors import PodError, Reason
from reconcile.records import DesiredStep, PropertyValue

# MySQL: `Type.name`, `Context.name`, `*Property.name` and `external_id` are VARCHAR(255)
# (characters); `Artifact.uri` and `EventPath.step_key` are TEXT (bytes).
MAX_NAME_CHARS = 255
MAX_TEXT_BYTES = 65_535
# MySQL's `int_value` is INT: 32 bits, whatever the proto allows.
INT_MIN, INT_MAX = -(2**31), 2**31 - 1
# MLMD writes a double into its SQL text with six decimals; MySQL reads at most 65 digits.
_EXACT_DOUBLE_LIMIT = 1e15

_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def text_problem(text: str) -> str | None:
    """Why MLMD cannot hold `text` unchanged (a NUL or a lone surrogate), or None."""
    found = _UNSTORABLE.search(text)
    if found is None:
        return None
    char = found.group()
    kind = "a NUL character" if char == "\x00" else f"a lone surrogate (U+{ord(char):04X})"
    return f"contains {kind} at position {found.start()}"


def printable(text: str) -> str:
    """`text` with NULs and lone surrogates escaped (`\\x00`, `\\ud800`): safe to print or encode."""
    return _UNSTORABLE.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


def checked_text(value: Any, what: str, *, max_bytes: int | None = None, max_chars: int | None = None) -> str:
    """`value` if it is a string MLMD can store unchanged within the bounds, else a PodError."""
    if not isinstance(value, str):
        raise PodError(Reason.INVALID_VALUE, f"{what} is not a string")
    problem = text_problem(value)
    if problem is not None:
        raise PodError(Reason.INVALID_VALUE, f"{what} {problem}")
    if max_chars is not None and len(value) > max_chars:
        raise PodError(Reason.VALUE_TOO_LARGE, f"{what} is {len(value)} characters; the limit is {max_chars}")
    if max_bytes is not None and len(value) > max_bytes // 4:  # only long text can be over
        size = len(value.encode("utf-8"))
        if size > max_bytes:
            raise PodError(Reason.VALUE_TOO_LARGE, f"{what} is {size} bytes; the limit is {max_bytes} bytes")
    return value


def double_is_exact(value: float) -> bool:
    """Whether MLMD stores `value` as a double and reads back the very same number."""
    return abs(value) < _EXACT_DOUBLE_LIMIT and float(f"{value:.6f}") == value


def property_value(value: Any, what: str) -> PropertyValue:
    """A JSON value as the property MLMD stores; None means "leave it out" (a JSON null).

    bool -> int; an int within 32 bits -> int, beyond -> its decimal text; a float MLMD
    stores exactly -> float, any other finite float -> its shortest decimal text (`repr`);
    NaN and infinities are refused; a string is checked (no NUL, no lone surrogate, at most
    MAX_STRING_VALUE_BYTES); objects and arrays become `str(value)` as the upstream writer did.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value if INT_MIN <= value <= INT_MAX else str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise PodError(Reason.INVALID_VALUE, f"{what} is {value!r}, which MLMD cannot store")
        return value if double_is_exact(value) else repr(value)
    text = value if isinstance(value, str) else str(value)
    return checked_text(text, what, max_bytes=c.MAX_STRING_VALUE_BYTES)


def value_problem(value: Any) -> str | None:
    """Why a plain property value must never be sent to MLMD (None: it may be sent).

    The last line of defence in store/convert, also for stored values merged back into a
    write: no empty Value (MLMD aborts), only int/float/str, ints within the proto's 64
    bits, finite floats, text without NUL or lone surrogates. Sizes and the 32-bit rule are
    the desired values' (`check_step`): a value another writer stored may exceed them.
    """
    if value is None:
        return "has no value set (MLMD aborts on an empty Value)"
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return f"is a {type(value).__name__}, not an int, float or str"
    if isinstance(value, int):
        return None if -(2**63) <= value < 2**63 else f"is {value}, beyond a 64-bit int"
    if isinstance(value, float):
        return None if math.isfinite(value) else f"is {value!r}, which MLMD cannot store"
    return text_problem(value)


def _check_properties(properties: dict[str, PropertyValue], what: str) -> None:
    for name, value in properties.items():
        checked_text(name, f"{what} name {name!r}", max_chars=MAX_NAME_CHARS)
        label = f"{what} {name!r}"
        if isinstance(value, str):
            checked_text(value, label, max_bytes=c.MAX_STRING_VALUE_BYTES)
            continue
        problem = value_problem(value)
        if problem is None and isinstance(value, int) and not INT_MIN <= value <= INT_MAX:
            problem = f"is {value}, outside MySQL's 32-bit int_value"
        if problem is None and isinstance(value, float) and not double_is_exact(value):
            problem = f"is {value!r}, which MLMD would not store exactly"
        if problem is not None:
            raise PodError(Reason.INVALID_VALUE, f"{label} {problem}")


def check_step(step: DesiredStep) -> DesiredStep:
    """`step` unchanged if every string, name, key and value in it can reach MLMD; else a PodError.

    Checks the run context (name, key, properties), the execution (key, type name,
    properties), every input (event path key, URI) and every output (key, name, type name,
    URI, custom properties) against the bounds above.
    """
    context = step.context
    checked_text(context.name, "workflow name", max_chars=MAX_NAME_CHARS)
    checked_text(context.key, "run context key", max_chars=MAX_NAME_CHARS)
    _check_properties(context.properties, "run context property")
    execution = step.execution
    checked_text(execution.key, "execution key", max_chars=MAX_NAME_CHARS)
    checked_text(execution.type_name, "execution type name", max_chars=MAX_NAME_CHARS)
    _check_properties(execution.properties, "execution property")
    _check_properties(execution.custom_properties, "execution custom property")
    for link in step.inputs:
        what = f"input artifact {link.name!r}"
        checked_text(link.name, f"{what} name", max_bytes=MAX_TEXT_BYTES)
        checked_text(link.uri, f"{what} URI", max_bytes=MAX_TEXT_BYTES)
    for out in step.outputs or ():
        what = f"output artifact {out.name!r}"
        checked_text(out.name, f"{what} name", max_bytes=MAX_TEXT_BYTES)
        checked_text(out.key, f"{what} key", max_chars=MAX_NAME_CHARS)
        checked_text(out.type_name, f"{what} type name", max_chars=MAX_NAME_CHARS)
        checked_text(out.uri, f"{what} URI", max_bytes=MAX_TEXT_BYTES)
        _check_properties(out.custom_properties, f"{what} custom property")
    return step
