"""One fuzz batch: clean workflows plus mutated ones, through the CLI into fresh MLMD, judged.

A batch is a dump of `clean` untouched workflows and one workflow per mutation whose
last step (no other step depends on it) carries that mutation. It is reconciled twice by
the real console script in a child process -- into an embedded SQLite store, or through
the project's gRPC server (also a child) over one -- and judged:

- neither run died of a signal, printed a traceback, or exited other than 0/1 with a report;
- every clean pod is recorded exactly once and named in no error;
- every mutated pod is recorded at most once, and one that is not recorded is named in
  errors or counted as skipped (nothing is lost silently);
- the second run has no actions and the same errors (it converged).
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.fuzz.child import CliRun, executions_by_pod, grpc_server, run_cli, write_dump
from tests.fuzz.mutations import Mutation
from tests.podfactory import chain, pods_of

JSON = dict[str, Any]
PROFILES = ("3.1", "3.3", "3.5")


@dataclass
class BatchResult:
    """What one batch did, and every broken property (empty: the batch passed)."""

    pods: int = 0
    mutated: int = 0
    runs: int = 0
    signals: int = 0
    tracebacks: int = 0
    lost_clean: int = 0
    duplicated: int = 0
    lost_mutated: int = 0
    second_pass_actions: int = 0
    server_died: bool = False
    mutated_errors: int = 0
    mutated_recorded: int = 0
    failures: list[str] = field(default_factory=list)


def build_batch(mutations: list[Mutation], clean: int, seed: int) -> tuple[list[JSON], list[str], list[JSON]]:
    """(all pods, names of the clean pods, the mutated pods as mutated)."""
    rng = random.Random(seed)
    pods: list[JSON] = []
    clean_names: list[str] = []
    for w in range(clean):
        group = pods_of(chain(f"clean-{seed}-{w}", 2), profile=rng.choice(PROFILES))
        clean_names += [p["metadata"]["name"] for p in group]
        pods += group
    victims = []
    for m, mutation in enumerate(mutations):
        group = pods_of(chain(f"victim-{seed}-{m}", 2), profile=rng.choice(PROFILES))
        group[-1] = mutation.applied_to(group[-1])
        victims.append(group[-1])
        pods += group
    return pods, clean_names, victims


def _name(pod: Any) -> str | None:
    meta = pod.get("metadata") if isinstance(pod, dict) else None
    name = meta.get("name") if isinstance(meta, dict) else None
    return name if isinstance(name, str) else None


def _judge_run(run: CliRun, result: BatchResult, label: str) -> None:
    result.runs += 1
    result.signals += run.signalled
    result.tracebacks += run.traceback
    result.failures += [f"{label}: {p}" for p in run.problems()]


def run_batch(
    workdir: Path, mutations: list[Mutation], *, clean: int = 3, seed: int = 0, grpc: bool = False
) -> BatchResult:
    """Build, reconcile twice, and judge one batch (see the module docstring)."""
    pods, clean_names, victims = build_batch(mutations, clean, seed)
    result = BatchResult(pods=len(pods), mutated=len(victims))
    workdir.mkdir(parents=True, exist_ok=True)
    dump = write_dump(workdir / f"batch-{seed}.json", pods)
    db = workdir / f"batch-{seed}.sqlite"
    db.unlink(missing_ok=True)
    store_url = f"sqlite:///{db}"
    if grpc:
        with grpc_server(store_url) as server:
            first, second = run_cli(dump, server.url), run_cli(dump, server.url)
            result.server_died = not server.alive()
            if result.server_died:
                result.failures.append(f"the gRPC server died: {''.join(server.log)[-2000:]}")
    else:
        first, second = run_cli(dump, store_url), run_cli(dump, store_url)
    _judge_run(first, result, "first run")
    _judge_run(second, result, "second run")
    if first.report is None or second.report is None or not db.exists():
        return result

    recorded = executions_by_pod(db)
    error_pods = Counter(e["pod"] for e in first.report["errors"])
    for name in clean_names:
        if recorded[name] != 1 or name in error_pods:
            result.lost_clean += recorded[name] == 0
            result.duplicated += recorded[name] > 1
            result.failures.append(
                f"clean pod {name}: {recorded[name]} executions, errors {error_pods[name]}"
            )
    unaccounted = 0
    # Two victims may be given the same hostile name: distinct pods (own node ids), a record each.
    same_name = Counter(_name(v) for v in victims)
    for victim, mutation in zip(victims, mutations, strict=True):
        name = _name(victim)
        count = recorded[name] if name is not None else 0
        if name is not None and same_name[name] > 1:
            # As many records as pods of that name: one each. More: a duplicate. Fewer: the
            # missing one must be named in errors, like any pod with no record.
            shared = same_name[name]
            count = 1 if count == shared else (2 if count > shared else 0)
        if count > 1:
            result.duplicated += 1
            result.failures.append(f"mutated pod ({mutation.where}) recorded {count} times")
        result.mutated_recorded += count == 1
        if count == 0 and (name is None or name not in error_pods):
            unaccounted += 1
    result.mutated_errors = sum(error_pods[_name(v)] > 0 for v in victims if _name(v) is not None)
    # Unnamed or renamed pods are reported under what their metadata says, or skipped.
    named_elsewhere = len(first.report["errors"]) - result.mutated_errors
    missing = unaccounted - first.report["pods_skipped"] - max(named_elsewhere, 0)
    if missing > 0:
        result.lost_mutated += missing
        result.failures.append(f"{missing} mutated pods neither recorded, skipped nor named in errors")
    actions = sum(second.report["actions"].values())
    if actions:
        result.second_pass_actions += actions
        result.failures.append(f"second run still acts: {second.report['actions']}")
    if sorted(map(str, first.report["errors"])) != sorted(map(str, second.report["errors"])):
        result.failures.append("the second run reports different errors")
    return result
