"""The errors of the stored-run readers; none of their messages ever holds a password."""

from __future__ import annotations


class HistoryError(Exception):
    """A stored-run source cannot be read; the message is one line, safe to print."""


class SourceConfigError(HistoryError):
    """The source URL or its options are wrong (a usage error: the CLI exits 2)."""


class SourceLayoutError(HistoryError):
    """The database holds no table this reader knows how to read (the CLI exits 2)."""


class SourceUnavailableError(HistoryError):
    """The database cannot be reached or refused a query (the CLI exits 3)."""
