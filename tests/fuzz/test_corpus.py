"""Every crasher of issue 11 (tests/fuzz/corpus.py) through the CLI into real MLMD, in a child process.

All cases go into one dump, each in a workflow of its own beside clean workflows: each is
named in errors (or recorded, with a warning where a detail was lost) while everything
else converges -- with the embedded store and through the project's gRPC server.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.fuzz.child import executions_by_pod, grpc_server, run_cli, write_dump
from tests.fuzz.corpus import CASES, PENDING_CASES, Case
from tests.podfactory import chain, pods_of

JSON = dict[str, Any]


def corpus_dump(path: Path) -> tuple[Path, dict[str, Case], list[str]]:
    """The dump, victim pod name -> its case, and the clean pods' names."""
    pods: list[JSON] = []
    clean = []
    for w in range(2):
        group = pods_of(chain(f"clean-{w}", 2), profile="3.5")
        clean += [p["metadata"]["name"] for p in group]
        pods += group
    victims = {}
    for i, case in enumerate(CASES):
        group = pods_of(chain(f"case-{i}", 2), profile=case.profile)
        case.mutate(group[-1])
        claimants = [group[-1], *case.twins(group[-1])]
        for victim in claimants:
            victims[victim["metadata"]["name"]] = case
        pods += [*group[:-1], *claimants]
    return write_dump(path, pods), victims, clean


def check_report(first: Any, second: Any, db: Path, victims: dict[str, Case], clean: list[str]) -> list[str]:
    """Every way the two runs differ from what the corpus says (empty: as documented)."""
    wrong = []
    for run in (first, second):
        wrong += run.problems()
    if wrong:
        return wrong
    recorded = executions_by_pod(db)
    errors = {e["pod"]: e for e in first.report["errors"]}
    warnings: dict[str, list[str]] = {}
    for w in first.report["warnings"]:
        warnings.setdefault(w["pod"], []).append(w["message"])
    for name in clean:
        if recorded[name] != 1 or name in errors:
            wrong.append(f"clean pod {name}: {recorded[name]} executions, error {errors.get(name)}")
    for name, case in victims.items():
        error, count = errors.get(name), recorded[name]
        if case.expect == "error":
            if error is None or count:
                wrong.append(f"{case.name}: expected an error, got {count} executions and {error}")
            elif (case.reason and error["reason"] != case.reason) or case.fragment not in error["message"]:
                wrong.append(f"{case.name}: expected {case.reason} with {case.fragment!r}, got {error}")
        elif count != 1 or error is not None:
            wrong.append(f"{case.name}: expected one execution, got {count} and error {error}")
        elif case.expect == "warning" and not any(case.fragment in m for m in warnings.get(name, [])):
            wrong.append(f"{case.name}: no warning naming {case.fragment!r}: {warnings.get(name)}")
    if second.report["actions"]:
        wrong.append(f"the second run still acts: {second.report['actions']}")
    return wrong


@pytest.mark.parametrize("through", ["sqlite", "grpc"])
def test_every_crasher_is_reported_and_everything_else_converges(tmp_path: Path, through: str) -> None:
    dump, victims, clean = corpus_dump(tmp_path / "corpus.json")
    assert set(victims.values()) == set(CASES)
    db = tmp_path / "mlmd.sqlite"
    if through == "grpc":
        with grpc_server(f"sqlite:///{db}") as server:
            first, second = run_cli(dump, server.url), run_cli(dump, server.url)
            assert server.alive(), "the MLMD gRPC server died"
    else:
        first, second = run_cli(dump, f"sqlite:///{db}"), run_cli(dump, f"sqlite:///{db}")
    assert first.returncode == 1 and second.returncode == 1
    assert check_report(first, second, db, victims, clean) == []


def test_the_pending_crashers_still_break_the_pass_as_described(tmp_path: Path) -> None:
    """The pass-level cases (see PENDING_CASES): when one fails here, it was fixed -- move it to CASES."""
    clean = pods_of(chain("pending", 2), profile="3.5")
    still_broken = {}
    for case in PENDING_CASES:
        path = tmp_path / f"{case.name}.json"
        dump = case.dump(clean)
        path.write_text(dump if isinstance(dump, str) else json.dumps(dump), encoding="ascii")
        run = run_cli(path, f"sqlite:///{tmp_path / case.name}.sqlite")
        assert not run.signalled, case.name
        if case.symptom:
            still_broken[case.name] = run.traceback and case.symptom in run.stderr
        elif case.name == "dump_not_a_list":
            still_broken[case.name] = run.returncode == 2 and "not a Kubernetes List" in run.stderr
        elif case.name == "kind_not_a_string":
            still_broken[case.name] = run.returncode == 0 and run.report["pods_seen"] == len(clean)
    assert still_broken == dict.fromkeys((c.name for c in PENDING_CASES), True)
