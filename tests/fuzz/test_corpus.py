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
from tests.fuzz.corpus import CASES, DUMP_CASES, Case
from tests.podfactory import chain, pods_of

JSON = dict[str, Any]


def corpus_dump(path: Path, *, dump_only: bool = True) -> tuple[Path, dict[str, Case], list[str]]:
    """The dump, victim pod name -> its case, and the clean pods' names.

    Without `dump_only`, the cases no API server would store are left out.
    """
    pods: list[JSON] = []
    clean = []
    for w in range(2):
        group = pods_of(chain(f"clean-{w}", 2), profile="3.5")
        clean += [p["metadata"]["name"] for p in group]
        pods += group
    victims = {}
    for i, case in enumerate(CASES):
        if case.dump_only and not dump_only:
            continue
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


@pytest.mark.parametrize("case", DUMP_CASES, ids=lambda case: case.name)
def test_a_hostile_dump_is_one_error_line_or_reported_items(tmp_path: Path, case: Any) -> None:
    clean = pods_of(chain("dumped", 2), profile="3.5")
    path = tmp_path / "dump.json"
    dump = case.dump(clean)
    path.write_text(dump if isinstance(dump, str) else json.dumps(dump), encoding="ascii")
    db = tmp_path / "mlmd.sqlite"
    run = run_cli(path, f"sqlite:///{db}")
    assert not run.signalled and not run.traceback, run.stderr
    assert run.returncode == case.exit_code, run.stderr
    if case.exit_code == 2:
        lines = run.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and case.fragment in lines[0], lines
        assert not db.exists() or executions_by_pod(db) == {}  # read through before anything is written
        return
    assert run.report is not None
    recorded = executions_by_pod(db)
    assert all(recorded[p["metadata"]["name"]] == 1 for p in clean), recorded
    if case.fragment:
        named = run.report["errors"] if case.reason else run.report["warnings"]
        assert any(
            e["pod"] == case.pod
            and case.fragment in e["message"]
            and (e["reason"] == case.reason or not case.reason)
            for e in named
        ), named
    if case.name == "kind_not_a_string":
        assert run.report["items_ignored_by_kind"] == {"<kind not a string>": 1}
