"""Exit codes of the command line, and the error that means "exit 2: usage".

A module of its own so that commands added by other distributions (the sandbox's) raise
the very class the command line catches, also when it runs as `python -m controller.cli`
(then `controller.cli` is loaded a second time, as `__main__`, with classes of its own).
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_POD_ERRORS = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
EXIT_DRIFT = 4
EXIT_INTERNAL = 5  # a bug of ours: one error line, the traceback only at --log-level debug


class UsageError(Exception):
    """A bad flag value or unreadable input file (exit 2)."""
