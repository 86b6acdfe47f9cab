"""The errors store/ raises: MLMD's own error types never leave this package.

Opening a store raises `StoreConfigError` or `StoreUnavailableError` (or one of its
subclasses below); every message is one line, names the store (password hidden) and says
what to do. The command line maps `StoreConfigError` to exit 2 and `StoreUnavailableError`,
with all of its subclasses, to exit 3. A call to an open store that fails comes out as one
of the call error types, its message the MLMD error's own. Every one is a `StoreError`, so
a caller that only needs to know "MLMD failed" catches that.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from ml_metadata import errors as mlmd_errors

__all__ = [
    "StoreConfigError",
    "StoreConflict",
    "StoreError",
    "StoreLoginRefusedError",
    "StoreMissingError",
    "StoreReadError",
    "StoreSchemaDamagedError",
    "StoreSchemaMismatchError",
    "StoreUnavailable",
    "StoreUnavailableError",
    "StoreWriteError",
    "reading",
    "write_failure",
]


class StoreError(Exception):
    """Base class of every error the ``store`` package raises."""


# --- opening a store -------------------------------------------------------------------


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


class StoreLoginRefusedError(StoreUnavailableError):
    """MySQL refused the login (user, password, or no access to the database).

    A configuration problem, not an outage: the controller stops at start on it, where a
    retry would only repeat the same refusal.
    """


class StoreSchemaDamagedError(StoreUnavailableError):
    """The database holds MLMD records but no complete MLMD schema: it needs a person, not a retry."""


# --- calls to an open store ------------------------------------------------------------


class StoreUnavailable(StoreUnavailableError):
    """MLMD stopped answering during a call (unavailable, or past its deadline).

    The store itself is unusable: a pass stops here and no pod is blamed.
    """


class StoreConflict(StoreError):
    """A write found one of its records already stored (another writer got there first)."""


class StoreWriteError(StoreError):
    """MLMD refused a write for another reason (the message says which)."""


class StoreReadError(StoreError):
    """MLMD answered a read with an error other than being unavailable."""


def _message(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


def _unavailable(exc: BaseException) -> bool:
    return isinstance(exc, mlmd_errors.UnavailableError | mlmd_errors.DeadlineExceededError)


def write_failure(exc: Exception) -> StoreError:
    """What a failed write transaction raised, as a store error (MLMD's or any other)."""
    if _unavailable(exc):
        error: StoreError = StoreUnavailable(_message(exc))
    elif isinstance(exc, mlmd_errors.AlreadyExistsError | mlmd_errors.AbortedError):
        # ABORTED: put_execution lost a race to create the same run context ("retry").
        error = StoreConflict(_message(exc))
    else:
        error = StoreWriteError(_message(exc))
    error.__cause__ = exc
    return error


@contextmanager
def reading() -> Iterator[None]:
    """Around MLMD reads: an MLMD error comes out as StoreUnavailable or StoreReadError."""
    try:
        yield
    except mlmd_errors.StatusError as exc:
        if _unavailable(exc):
            raise StoreUnavailable(_message(exc)) from exc
        raise StoreReadError(_message(exc)) from exc
