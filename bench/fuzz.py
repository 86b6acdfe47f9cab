"""`python -m bench fuzz --pods N`: N hypothesis-mutated pods through the CLI into real MLMD.

The long run of tests/fuzz: batches of mutated pods beside clean workflows, each batch
reconciled twice by the console script in a child process (every `--grpc-every`-th batch
through the project's gRPC server, also a child), judged by tests/fuzz/campaign.py. The
JSON report counts aborts (signals), tracebacks, lost or duplicated records of clean
pods, mutated pods lost silently, and actions of the second pass; all must be 0.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from bench.common import Report
from tests.fuzz.campaign import BatchResult, run_batch
from tests.fuzz.mutations import Mutation, mutations

COUNTED = (
    "pods",
    "mutated",
    "runs",
    "signals",
    "tracebacks",
    "lost_clean",
    "duplicated",
    "lost_mutated",
    "second_pass_actions",
    "mutated_errors",
    "mutated_recorded",
)


def fuzz(
    pods: int,
    batch: int = 25,
    clean: int = 3,
    grpc_every: int = 10,
    seed: int = 0,
    keep_failed: Path | None = None,
) -> Report:
    """Run at least `pods` mutated pods in batches of `batch`; the report's `results` hold the counts.

    With `keep_failed`, each batch that fails is copied there (its dump, its MLMD file and the
    mutations, one a line), to be replayed with the CLI: hypothesis draws anew on every run.
    """
    batches = max(1, -(-pods // batch))
    totals: dict[str, Any] = dict.fromkeys(COUNTED, 0)
    totals.update(batches=0, grpc_batches=0, servers_died=0, failures=[], by_mutation={})
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-fuzz-") as tmp:

        @settings(
            max_examples=batches,
            database=None,
            deadline=None,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(st.lists(mutations(), min_size=batch, max_size=batch))
        def one_batch(mutated: list[Mutation]) -> None:
            index = totals["batches"]
            if index >= batches:
                return
            grpc = grpc_every > 0 and index % grpc_every == grpc_every - 1
            workdir = Path(tmp) / str(index)
            result = run_batch(workdir, mutated, clean=clean, seed=seed + index, grpc=grpc)
            _add(totals, result, mutated, grpc)
            if result.failures and keep_failed is not None:
                kept = keep_failed / f"batch-{index}"
                shutil.copytree(workdir, kept, dirs_exist_ok=True)
                (kept / "mutations.txt").write_text("".join(f"{m!r}\n" for m in mutated))
                (kept / "failures.txt").write_text("".join(f"{f}\n" for f in result.failures))

        one_batch()
    report = Report("fuzz", {"pods": pods, "batch": batch, "clean_workflows_per_batch": clean})
    totals["duration_s"] = round(time.monotonic() - started, 1)
    report.details["failures"] = totals.pop("failures")[:50]
    report.details["mutations_by_field"] = dict(sorted(totals.pop("by_mutation").items()))
    report.figures.update(totals)
    for name in ("signals", "tracebacks", "lost_clean", "duplicated", "lost_mutated", "second_pass_actions"):
        report.target(name, totals[name], 0)
    report.target("servers_died", totals["servers_died"], 0)
    report.target("mutated", totals["mutated"], pods, at_least=True)
    return report


def _add(totals: dict[str, Any], result: BatchResult, mutated: list[Mutation], grpc: bool) -> None:
    totals["batches"] += 1
    totals["grpc_batches"] += grpc
    totals["servers_died"] += result.server_died
    for name in COUNTED:
        totals[name] += getattr(result, name)
    for mutation in mutated:
        totals["by_mutation"][mutation.where] = totals["by_mutation"].get(mutation.where, 0) + 1
    totals["failures"] += [f"batch {totals['batches'] - 1}: {f}" for f in result.failures]
