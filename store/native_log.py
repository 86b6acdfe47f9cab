"""Keep the MLMD C++ library's own log lines (glog, written to fd 2) off the terminal.

The embedded library logs through glog straight to file descriptor 2: a wrong MySQL login,
for instance, prints three raw lines (``WARNING: Logging before InitGoogleLogging() ...``,
``E1201 06:43:34.25 ... mysql_metadata_source.cc:174] MySQL database was not initialized
...``) before our one-line error. :func:`native_stderr_captured` points fd 2 at a temporary
file for the duration of a library call and hands the lines to Python logging at DEBUG
(logger ``store.mlmd_native``); the caller may quote the last one in its own error.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

__all__ = ["NativeOutput", "native_stderr_captured"]

log = logging.getLogger("store.mlmd_native")

# glog: "E1201 06:43:34.250698 17312 mysql_metadata_source.cc:174] message"
_GLOG_PREFIX = re.compile(r"^[IWEF]\d{4} \d\d:\d\d:\d\d\.\d+\s+\d+ [^\]]+\] ?")
_REDIRECT_LOCK = threading.Lock()


@dataclass
class NativeOutput:
    """The lines fd 2 received during a :func:`native_stderr_captured` block (filled at its end)."""

    lines: list[str] = field(default_factory=list)

    def last_message(self) -> str:
        """The last glog message without its prefix ('' if none), e.g. for an error's detail."""
        for line in reversed(self.lines):
            if _GLOG_PREFIX.match(line):
                return _GLOG_PREFIX.sub("", line).strip()
        return ""


@contextlib.contextmanager
def native_stderr_captured() -> Iterator[NativeOutput]:
    """Capture everything written to fd 2 inside the block; log it at DEBUG afterwards.

    For that moment fd 2 is process-wide, so another thread's stderr output is captured and
    logged at DEBUG too; store opens are short and rare, and nothing is dropped. Blocks nest
    safely across threads (one redirection at a time).
    """
    output = NativeOutput()
    try:
        with _REDIRECT_LOCK, tempfile.TemporaryFile() as sink:
            sys.stderr.flush()
            saved = os.dup(2)
            os.dup2(sink.fileno(), 2)
            try:
                yield output
            finally:
                sys.stderr.flush()
                os.dup2(saved, 2)
                os.close(saved)
                sink.seek(0)
                text = sink.read().decode("utf-8", "replace")
                output.lines.extend(line for line in text.splitlines() if line.strip())
    finally:
        for line in output.lines:
            log.debug("%s", line)
