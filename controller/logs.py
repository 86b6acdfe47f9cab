"""Logging setup: JSON lines for machines, one readable line per record for people.

``setup_logging(json_logs)`` installs one handler on the root logger:

* JSON (``json_logs=True``): one object per line with ``ts`` (RFC 3339, UTC,
  milliseconds), ``level``, ``logger``, ``msg``, then every ``extra=`` field of the
  call (``namespace``, ``pod``, ``reason``, ``trigger``, ``duration_s``, ...) and,
  when the record carries an exception, ``exc``: the formatted traceback as one
  string. Values that JSON cannot hold are written with ``str()``.
* Human (``json_logs=False``): ``<ts> <LEVEL> <logger>: <msg> key=value ...`` on one
  line (newlines in the message are escaped); a traceback, if any, follows on its
  own lines.
* ``json_logs=None``: JSON unless the stream (stderr) is a terminal.

Both formatters pass every record through ``reconcile.redact.redact``: the message,
every ``extra=`` value (strings inside lists and dicts too; the whole value of a field
whose name says it is a secret, e.g. ``password``) and the traceback, so no credential
in any URL or DSN reaches the log, whoever logged it.

Calling it again replaces the handler it installed before (never duplicates it)
and leaves handlers installed by others (e.g. pytest's) alone.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import sys
from typing import Any, TextIO

from reconcile.redact import MASK, redact
from reconcile.values import printable

# Libraries whose INFO/DEBUG output drowns ours, and the least severe level we let through.
NOISY_LOGGERS = {"absl": logging.ERROR, "kubernetes": logging.WARNING, "urllib3": logging.WARNING}
# APScheduler logs every job it adds and runs at INFO (two thirds of a quiet run's lines):
# shown only when DEBUG is asked for.
SCHEDULER_LOGGER = "apscheduler"

# Attributes every LogRecord has; anything else on a record came from `extra=`.
_RECORD_ATTRS = frozenset(vars(logging.LogRecord("x", logging.INFO, "x", 0, "x", None, None)).keys()) | {
    "message",
    "asctime",
    "taskName",
}

_HANDLER_MARK = "_kfpmr_handler"


def _timestamp(record: logging.LogRecord) -> str:
    t = dt.datetime.fromtimestamp(record.created, dt.UTC)
    return t.isoformat(timespec="milliseconds").replace("+00:00", "Z")


# Every name here holds one of reconcile/redact.py's hint words (`might_hold_secret` relies on it).
_SECRET_FIELD = re.compile(r"password|passwd|secret|token|api_?key|credential", re.IGNORECASE)


def redacted_value(value: Any) -> Any:
    """`value` with every string in it (also inside lists, tuples and dicts) redacted."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, bool | int | float) or value is None:
        return value
    if isinstance(value, dict):
        return {k: MASK if _SECRET_FIELD.search(str(k)) else redacted_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [redacted_value(v) for v in value]
    return redact(str(value))


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    """The record's `extra=` fields, redacted (a field named like a secret is masked whole)."""
    return {
        k: MASK if _SECRET_FIELD.search(k) else redacted_value(v)
        for k, v in vars(record).items()
        if k not in _RECORD_ATTRS and not k.startswith("_")
    }


def _exception_text(formatter: logging.Formatter, record: logging.LogRecord) -> str | None:
    parts = []
    if record.exc_info and record.exc_info[0] is not None:
        parts.append(formatter.formatException(record.exc_info))
    elif record.exc_text:
        parts.append(record.exc_text)
    if record.stack_info:
        parts.append(formatter.formatStack(record.stack_info))
    return redact("\n".join(parts)) if parts else None


class JsonFormatter(logging.Formatter):
    """One JSON object per record (see the module docstring for the fields)."""

    def format(self, record: logging.LogRecord) -> str:
        obj: dict[str, Any] = {
            "ts": _timestamp(record),
            "level": record.levelname,
            "logger": record.name,
            "msg": redact(record.getMessage()),
        }
        for key, value in _extras(record).items():
            obj.setdefault(key, value)
        exc = _exception_text(self, record)
        if exc is not None:
            obj["exc"] = exc
        # A lone surrogate (from a hostile pod name) would make the stream's write raise.
        return printable(json.dumps(obj, default=str, ensure_ascii=False))


class HumanFormatter(logging.Formatter):
    """``<ts> <LEVEL> <logger>: <msg> key=value ...``, one line (plus a traceback if any)."""

    def format(self, record: logging.LogRecord) -> str:
        msg = redact(record.getMessage()).replace("\r", "\\r").replace("\n", "\\n")
        line = f"{_timestamp(record)} {record.levelname:<7} {record.name}: {msg}"
        extras = _extras(record)
        if extras:
            line += " " + " ".join(f"{k}={_human_value(v)}" for k, v in extras.items())
        exc = _exception_text(self, record)
        return printable(line if exc is None else f"{line}\n{exc}")


def _human_value(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    if not text or any(c.isspace() for c in text) or '"' in text:
        return json.dumps(text)
    return text


def _parse_level(level: str | int) -> int:
    if isinstance(level, int):
        return level
    value = logging.getLevelName(level.strip().upper())
    if not isinstance(value, int):
        raise ValueError(f"unknown log level {level!r} (use DEBUG, INFO, WARNING or ERROR)")
    return value


def setup_logging(json_logs: bool | None, level: str | int = "INFO", stream: TextIO | None = None) -> None:
    """Configure the root logger (idempotent).

    Args:
        json_logs: True for JSON lines, False for human lines, None for JSON unless
            ``stream`` is a terminal.
        level: root level name (``DEBUG``, ``INFO``, ``WARNING``, ``ERROR``) or number.
        stream: where to write; default ``sys.stderr`` (looked up at call time).
    """
    root_level = _parse_level(level)  # fail before touching anything
    out = stream if stream is not None else sys.stderr
    if json_logs is None:
        isatty = getattr(out, "isatty", None)
        json_logs = not (callable(isatty) and isatty())
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _HANDLER_MARK, False)]:
        root.removeHandler(old)
        old.close()
    handler = logging.StreamHandler(out)
    setattr(handler, _HANDLER_MARK, True)
    handler.setFormatter(JsonFormatter() if json_logs else HumanFormatter())
    root.addHandler(handler)
    root.setLevel(root_level)
    for name, floor in NOISY_LOGGERS.items():
        lib = logging.getLogger(name)
        lib.setLevel(max(floor, lib.level))
    # Set, not raised: a later call asking for DEBUG lets the scheduler's lines through again.
    scheduler_level = logging.NOTSET if root_level <= logging.DEBUG else logging.WARNING
    logging.getLogger(SCHEDULER_LOGGER).setLevel(scheduler_level)
