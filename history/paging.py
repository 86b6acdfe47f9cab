"""Keyset pages of stored runs, fetched in byte-bounded batches.

Memory stays bounded whatever the table holds: a page lists at most
`page_runs` keys with the size of each stored Workflow text (small rows),
and the texts are then fetched a batch at a time, each batch at most
`page_bytes` bytes of text (or one text, if a single one is larger). Each
query is a short read-only transaction of its own: nothing stays open while
the caller works on a yielded run. Pages continue from the last key seen
(keyset pagination), so a page costs the same at the end of a large table
as at its start, and rows added or deleted meanwhile neither repeat nor
shift other rows (a row added behind the cursor waits for the next read).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from history.records import StoredRun

DEFAULT_PAGE_RUNS = 500
DEFAULT_PAGE_BYTES = 32 * 1024 * 1024

K = TypeVar("K")


@dataclass(frozen=True)
class RowRef(Generic[K]):
    """One stored run as a page lists it: its key, the size of its text, and its small columns."""

    key: K
    size: int
    columns: tuple[Any, ...]


def byte_batches(refs: Sequence[RowRef[K]], max_bytes: int) -> Iterator[list[RowRef[K]]]:
    """`refs` in order, cut into batches of at most `max_bytes` of text (never empty)."""
    batch: list[RowRef[K]] = []
    total = 0
    for ref in refs:
        if batch and total + ref.size > max_bytes:
            yield batch
            batch, total = [], 0
        batch.append(ref)
        total += max(ref.size, 0)
    if batch:
        yield batch


def keyset_runs(
    list_page: Callable[[K | None, int], list[RowRef[K]]],
    fetch_texts: Callable[[list[RowRef[K]]], dict[K, Any]],
    to_run: Callable[[RowRef[K], Any], StoredRun],
    *,
    page_runs: int = DEFAULT_PAGE_RUNS,
    page_bytes: int = DEFAULT_PAGE_BYTES,
) -> Iterator[StoredRun]:
    """Every stored run, one at a time, in key order.

    `list_page(after, limit)` lists up to `limit` refs with keys greater
    than `after` (None: from the start) in key order; `fetch_texts(batch)`
    returns the stored texts of a batch by key (a row deleted since it was
    listed is simply missing, and skipped); `to_run` makes the StoredRun.
    """
    if page_runs < 1 or page_bytes < 1:
        raise ValueError("page_runs and page_bytes must be positive")
    after: K | None = None
    while True:
        refs = list_page(after, page_runs)
        for batch in byte_batches(refs, page_bytes):
            texts = fetch_texts(batch)
            for ref in batch:
                if ref.key in texts:
                    yield to_run(ref, texts.pop(ref.key))
            del texts
        if len(refs) < page_runs:
            return
        after = refs[-1].key
