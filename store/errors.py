"""The errors raised when an MLMD store cannot be opened or used as asked.

Every message is one line, names the store (password hidden) and says what to do. The
command line maps :class:`StoreConfigError` to exit 2 and :class:`StoreUnavailableError`,
with all of its subclasses here, to exit 3.
"""

from __future__ import annotations

__all__ = [
    "StoreConfigError",
    "StoreError",
    "StoreMissingError",
    "StoreSchemaDamagedError",
    "StoreSchemaMismatchError",
    "StoreUnavailableError",
]


class StoreError(Exception):
    """Base class of the errors raised by the ``store`` package when opening a store."""


class StoreConfigError(StoreError, ValueError):
    """The store URL or a connection option is invalid (a one-line message)."""


class StoreUnavailableError(StoreError):
    """The store could not be reached or opened (a one-line message)."""


class StoreMissingError(StoreUnavailableError):
    """A read-only open found no store: no SQLite file, no MySQL database, or no MLMD schema in it.

    Read-only opens never create anything, so this is where they stop.
    """


class StoreSchemaMismatchError(StoreUnavailableError):
    """The database's MLMD schema version is not the embedded library's.

    The reconciler never migrates a database it did not create; such a database belongs to
    an MLMD server of its own version, which is the way to reach it.
    """


class StoreSchemaDamagedError(StoreUnavailableError):
    """The database holds MLMD records but no complete MLMD schema: it needs a person, not a retry."""
