"""Reading stored runs holds one page of keys and one byte-bounded batch of texts, not the table."""

from __future__ import annotations

import copy
import gc
import json
import tracemalloc
from collections.abc import Callable

import pytest

from history import open_argo_archive, open_kfp_db
from history.paging import RowRef, byte_batches
from history.url import DatabaseURL
from sandbox.argo_archive import ArgoArchiveWriter
from sandbox.kfp_runstore import KfpRunStore
from tests.history.conftest import record_runs

RUNS = 80
PADDING = 64 * 1024  # bytes of annotation per stored Workflow: ~5 MiB in all


def test_byte_batches_cut_at_the_budget_and_never_leave_a_run_out() -> None:
    refs = [RowRef(key=i, size=size, columns=()) for i, size in enumerate([5, 5, 5, 20, 1, 1])]
    assert [[r.key for r in b] for b in byte_batches(refs, 10)] == [[0, 1], [2], [3], [4, 5]]
    assert [[r.key for r in b] for b in byte_batches(refs, 1)] == [[0], [1], [2], [3], [4], [5]]
    assert list(byte_batches([], 10)) == []


def padded_copies(template: dict, count: int) -> list[dict]:
    copies = []
    for i in range(count):
        workflow = copy.deepcopy(template)
        meta = workflow["metadata"]
        meta.update(name=f"big-{i:03d}", uid=f"uid-big-{i:03d}")
        meta["labels"]["pipeline/runid"] = f"run-big-{i:03d}"
        meta["annotations"]["padding"] = "x" * PADDING
        copies.append(workflow)
    return copies


def peak_while_reading(open_source: Callable[[], object]) -> tuple[int, int]:
    """(runs read, peak bytes Python allocated while reading them one at a time)."""
    gc.collect()
    tracemalloc.start()
    try:
        with open_source() as source:  # type: ignore[attr-defined]
            count = 0
            for run in source.runs():
                assert run.workflow is not None
                count += 1
                del run
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return count, peak


@pytest.mark.parametrize("dialect", ["mysql", "postgresql"])
def test_memory_is_bounded_by_the_page_not_by_the_table(
    kfp_store: Callable[..., tuple[DatabaseURL, KfpRunStore]],
    archive_store: Callable[..., tuple[DatabaseURL, ArgoArchiveWriter]],
    dialect: str,
) -> None:
    kfp_url, kfp = kfp_store(dialect, "1.8")
    archive_url, archive = archive_store(dialect)
    recorded = record_runs(runs=1)
    template = recorded.live_workflows[recorded.names[0]]
    for workflow in padded_copies(template, RUNS):
        kfp.report(workflow["metadata"]["labels"]["pipeline/runid"], workflow, workflow)
        archive.archive(workflow)
    total = RUNS * len(json.dumps(padded_copies(template, 1)[0]))

    for opener, url in ((open_kfp_db, kfp_url), (open_argo_archive, archive_url)):
        small = peak_while_reading(lambda o=opener, u=url: o(u, page_runs=10, page_bytes=256 * 1024))
        large = peak_while_reading(lambda o=opener, u=url: o(u, page_runs=1000, page_bytes=64 * 1024 * 1024))
        assert small[0] == large[0] == RUNS
        # Small pages hold a few texts at a time; one page holding everything holds the table.
        assert small[1] < total / 6, (opener.__name__, small[1], total)
        assert large[1] > total, (opener.__name__, large[1], total)
