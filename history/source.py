"""What every stored-run source offers a pass, whichever database it reads."""

from __future__ import annotations

from collections.abc import Iterator
from types import TracebackType
from typing import Protocol, runtime_checkable

from history.records import RunScope, StoredRun


@runtime_checkable
class StoredRunSource(Protocol):
    """An open stored-run source: `KfpRunDatabase` or `ArgoArchive`."""

    def count(self, scope: RunScope = ...) -> int:
        """How many stored runs `scope` selects."""
        ...

    def runs(self, scope: RunScope = ...) -> Iterator[StoredRun]:
        """The stored runs `scope` selects, one at a time, with bounded memory."""
        ...

    def close(self) -> None:
        """Close the connection."""
        ...

    def __enter__(self) -> StoredRunSource: ...

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...
