"""setup_logging: JSON lines with extras, one-line human output, idempotence."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from controller.logs import setup_logging

RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")


class TtyStream(io.StringIO):
    """A text stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def ours(root: logging.Logger) -> list[logging.Handler]:
    return [h for h in root.handlers if getattr(h, "_kfpmr_handler", False)]


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    level = root.level
    libs = {name: logging.getLogger(name).level for name in ("absl", "kubernetes", "urllib3")}
    yield
    for h in ours(root):
        root.removeHandler(h)
    root.setLevel(level)
    for name, lib_level in libs.items():
        logging.getLogger(name).setLevel(lib_level)


def test_json_lines_carry_extras_and_exceptions() -> None:
    buf = io.StringIO()
    setup_logging(True, "DEBUG", stream=buf)
    log = logging.getLogger("controller.test")
    where = {"namespace": "ns1", "pod": "p-1", "reason": "bad_json"}
    log.info("pod skipped: %s", "bad annotation", extra=where)
    log.debug("pass done", extra={"trigger": "resync", "duration_s": 1.25, "path": Path("/tmp/x")})
    try:
        raise ValueError("boom\nsecond line")
    except ValueError:
        log.exception("pass failed", extra={"trigger": "watch"})
    lines = buf.getvalue().splitlines()
    assert len(lines) == 3
    first, second, third = (json.loads(line) for line in lines)
    assert RFC3339.match(first["ts"]) and first["ts"].endswith("Z")
    assert first["level"] == "INFO" and first["logger"] == "controller.test"
    assert first["msg"] == "pod skipped: bad annotation"
    assert (first["namespace"], first["pod"], first["reason"]) == ("ns1", "p-1", "bad_json")
    assert "exc" not in first
    assert second["trigger"] == "resync" and second["duration_s"] == 1.25
    assert second["path"] == "/tmp/x"  # not JSON-able: written with str()
    assert third["level"] == "ERROR" and third["trigger"] == "watch"
    assert third["exc"].startswith("Traceback") and "ValueError: boom" in third["exc"]


def test_human_mode_is_one_line_per_record() -> None:
    buf = io.StringIO()
    setup_logging(False, stream=buf)
    logging.getLogger("controller.test").warning(
        "first line\nsecond line", extra={"namespace": "ns1", "pod": "p 1", "duration_s": 0.5}
    )
    logging.getLogger("controller.test").debug("below the level")
    out = buf.getvalue()
    assert out.count("\n") == 1
    line = out.rstrip("\n")
    assert "WARNING" in line and "controller.test: first line\\nsecond line" in line
    assert 'namespace=ns1 pod="p 1" duration_s=0.5' in line
    assert RFC3339.match(line.split(" ", 1)[0])


def test_idempotent_and_mode_follows_the_stream() -> None:
    root = logging.getLogger()
    buf = io.StringIO()
    setup_logging(None, stream=buf)  # not a terminal -> JSON
    setup_logging(None, stream=buf)
    assert len(ours(root)) == 1
    logging.getLogger("controller.test").info("once")
    lines = buf.getvalue().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["msg"] == "once"

    tty = TtyStream()
    setup_logging(None, "WARNING", stream=tty)  # a terminal -> human; replaces the JSON handler
    assert len(ours(root)) == 1
    logging.getLogger("controller.test").warning("on a terminal")
    logging.getLogger("controller.test").info("filtered")
    assert not tty.getvalue().startswith("{") and "on a terminal" in tty.getvalue()
    assert "filtered" not in tty.getvalue()
    assert len(buf.getvalue().splitlines()) == 1  # the old handler is gone


def test_noisy_libraries_are_quieted() -> None:
    setup_logging(True, "DEBUG", stream=io.StringIO())
    assert logging.getLogger("absl").getEffectiveLevel() == logging.ERROR
    assert logging.getLogger("kubernetes").getEffectiveLevel() == logging.WARNING
    assert logging.getLogger("urllib3").getEffectiveLevel() == logging.WARNING
    assert logging.getLogger("controller").getEffectiveLevel() == logging.DEBUG


def test_bad_level_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown log level"):
        setup_logging(True, "LOUD", stream=io.StringIO())


@pytest.mark.parametrize("json_logs", [True, False])
def test_credentials_are_redacted_in_every_part_of_a_record(json_logs: bool) -> None:
    buf = io.StringIO()
    setup_logging(json_logs, "INFO", stream=buf)
    log = logging.getLogger("controller.test")
    log.info(
        "controller started",
        extra={
            "mlmd": "mysql://root:Sup3rS3cret@db:3306/mlmd",
            "urls": ["mysql//root:Sup3rS3cret@db/x", {"dsn": "host=db password=Sup3rS3cret"}],
            "mlmd_password": "Sup3rS3cret",
        },
    )
    log.warning("cannot reach mysql//root:Sup3rS3cret@db:3306/x")
    try:
        raise ValueError("bad URL root:Sup3rS3cret@db")
    except ValueError:
        log.exception("failed")
    out = buf.getvalue()
    assert "Sup3rS3cret" not in out
    assert "db:3306" in out and "root:***@db" in out
    if json_logs:
        first = json.loads(out.splitlines()[0])
        assert first["mlmd"] == "mysql://root:***@db:3306/mlmd"
        assert first["mlmd_password"] == "***"


@pytest.mark.parametrize("json_logs", [True, False])
def test_a_lone_surrogate_in_a_record_is_escaped_not_a_logging_error(json_logs: bool) -> None:
    buf = io.BytesIO()
    stream = io.TextIOWrapper(buf, encoding="utf-8")  # strict: a lone surrogate cannot be written
    setup_logging(json_logs, "INFO", stream=stream)
    logging.getLogger("controller.test").error("pod failed", extra={"pod": "p\ud800", "namespace": "n\x00"})
    stream.flush()
    line = buf.getvalue().decode("utf-8")
    assert "pod failed" in line and "\\ud800" in line
    if json_logs:
        assert json.loads(line)["pod"] == "p\ud800"
