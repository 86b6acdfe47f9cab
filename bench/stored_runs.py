"""`python -m bench stored-runs`: `reconcile --from-kfp-db` over 10,000 runs KFP stored.

A KFP-shaped `mlpipeline.run_details` table (KFP 1.8.5 layout) on the MariaDB at
127.0.0.1:3306 is filled with finished 3-step chain runs, every second one with
`compressedNodes`: a few runs are simulated (Argo 3.5 profile) and cloned under new
Workflow names, uids and run ids, as KFP's persistence agent would have stored
them. Then the real CLI, in a child process, backfills an empty MLMD (SQLite
file) from them with `reconcile --no-cluster --from-kfp-db`; its peak RSS comes
from the kernel (`wait4`'s ru_maxrss of that very child).

Figures: `runs_per_s`, `wall_s`, `peak_rss_mb` of the full backfill, and
`peak_rss_mb_tenth` of the same command over the first tenth of the runs (filled
first): memory is bounded when the two are about equal. Bounds, same run:
`baseline_rss_mb` (the CLI over zero runs: imports, MLMD, one empty pass) and
`read_runs_per_s` (the stored runs streamed by `history` and turned into steps,
no MLMD). Outcomes: every step recorded once, a second pass writes nothing.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bench.common import Report, ratio

STEPS = 3
TEMPLATES = 4
CLI = [sys.executable, "-m", "controller.cli"]
MARIADB = "mysql://root@127.0.0.1:3306/{name}"


def _templates(count: int) -> list[dict[str, Any]]:
    """`count` finished chain runs, simulated, as their Workflows looked when they finished."""
    from sandbox.objectstore import ObjectStore
    from sandbox.simulator import SimClock, Simulator, chain_workflow

    cluster = ObjectStore()
    simulator = Simulator(cluster, "3.5", seed=11, clock=SimClock())
    for _ in range(count):
        simulator.submit(chain_workflow(STEPS), "kubeflow")
    simulator.run_until_complete()
    return [copy.deepcopy(w) for w in cluster.list("workflows")]


def _clone(template: dict[str, Any], index: int) -> tuple[str, dict[str, Any]]:
    """The template as another run: new Workflow name, uid and run id, node ids and pod names.

    Argo derives a node's id and its pod's name from the node's name, which starts
    with the Workflow's: both are recomputed (a pod name that does not match the
    artifacts' keys would look like a cache hit).
    """
    from reconcile.argo import node_id_for

    meta = template["metadata"]
    old, name = meta["name"], f"stored-chain-{index:06d}"
    text = json.dumps(template)
    renamed: list[tuple[str, str]] = []
    for node_id, node in template["status"]["nodes"].items():
        if node_id == old:
            continue
        new_id = node_id_for(name, node["name"].replace(old, name, 1))
        renamed.append((node_id.rsplit("-", 1)[1], new_id.rsplit("-", 1)[1]))
    # Two steps, so a new hash equal to another node's old one is not renamed twice.
    for number, (old_hash, _) in enumerate(renamed):
        text = text.replace(f"-{old_hash}", f"-@hash{number}@")
    for number, (_, new_hash) in enumerate(renamed):
        text = text.replace(f"-@hash{number}@", f"-{new_hash}")
    uid = str(uuid.UUID(int=index + 1))
    run_id = str(uuid.UUID(int=(1 << 100) + index))
    text = text.replace(old, name).replace(meta["uid"], uid)
    text = text.replace(meta["labels"]["pipeline/runid"], run_id)
    return run_id, json.loads(text)


def fill(url: Any, first: int, last: int, templates: list[dict[str, Any]]) -> None:
    """Store runs `first`..`last - 1` as KFP's API server does (even ones plain, odd compressed)."""
    from sandbox.kfp_runstore import KfpRunStore
    from sandbox.persistence import stored_form
    from sandbox.sqldb import SqlWriter

    with SqlWriter(url) as writer:
        store = KfpRunStore(writer, "1.8")
        for index in range(first, last):
            run_id, workflow = _clone(templates[index % len(templates)], index)
            store.report(run_id, workflow, stored_form(workflow, "compressed" if index % 2 else "nodes"))


def cli_measured(args: list[str]) -> tuple[subprocess.CompletedProcess[str], float, float]:
    """Run the CLI in a child; (its result, wall seconds, its own peak RSS in MB from wait4).

    Output goes to files and the child is reaped with `os.wait4`, whose rusage is that
    child's alone (RUSAGE_CHILDREN would be the largest of every child reaped so far).
    """
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        started = time.monotonic()
        child = subprocess.Popen([*CLI, *args], stdout=out, stderr=err, text=True, env=_env())
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.monotonic() - started
        child.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
        out.seek(0)
        err.seek(0)
        done = subprocess.CompletedProcess(child.args, child.returncode, out.read(), err.read())
    return done, wall, usage.ru_maxrss / 1024


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("KFPMR_", "METADATA_GRPC_"))}


def read_bound(url: Any) -> tuple[float, int]:
    """Stream every stored run and rebuild its steps, no MLMD: (seconds, steps)."""
    from history import open_kfp_db
    from reconcile.from_workflow import desired_steps_from_workflow
    from reconcile.options import ReconcileOptions

    options = ReconcileOptions()
    steps = 0
    started = time.monotonic()
    with open_kfp_db(url) as source:
        for run in source.runs():
            assert run.workflow is not None
            steps += len(desired_steps_from_workflow(run.workflow, options)[0])
    return time.monotonic() - started, steps


def _backfill(workdir: Path, url: str, name: str) -> tuple[dict[str, Any], float, float]:
    mlmd = f"sqlite:///{workdir / name}"
    done, wall, rss = cli_measured(
        ["reconcile", "--no-cluster", "--from-kfp-db", url, "--mlmd", mlmd, "-o", "json"]
    )
    if done.returncode != 0:
        raise RuntimeError(f"reconcile --from-kfp-db exited {done.returncode}: {done.stderr.strip()[-400:]}")
    return json.loads(done.stdout), wall, rss


def stored_runs(workdir: Path, runs: int) -> Report:
    """The scenario at `runs` stored runs (10,000 full, 20 quick)."""
    from history.url import parse_database_url
    from sandbox.kfp_runstore import create_run_details
    from sandbox.sqldb import SqlWriter, create_database, drop_database
    from store.connect import open_store

    database = parse_database_url(MARIADB.format(name=f"kfpmr_bench_stored_{os.getpid()}"), what="bench")
    url = database.redacted()
    report = Report(
        "stored-runs", {"runs": runs, "steps_per_run": STEPS, "layout": "kfp-1.8", "mlmd": "sqlite"}
    )
    create_database(database)
    try:
        with SqlWriter(database) as writer:
            create_run_details(writer, "1.8")
        templates = _templates(TEMPLATES)
        tenth = max(1, runs // 10)
        started = time.monotonic()
        fill(database, 0, tenth, templates)
        small, small_wall, small_rss = _backfill(workdir, url, "mlmd-tenth.sqlite")
        fill(database, tenth, runs, templates)
        fill_s = time.monotonic() - started - small_wall

        open_store(f"sqlite:///{workdir / 'mlmd-empty.sqlite'}")
        baseline, _, baseline_rss = cli_measured(
            ["verify", "--no-cluster", "--from-kfp-db", url, "--run-id", "none",
             "--mlmd", f"sqlite:///{workdir / 'mlmd-empty.sqlite'}", "-o", "json"]
        )  # fmt: skip
        assert baseline.returncode == 0, baseline.stderr
        read_s, read_steps = read_bound(database)

        full, wall, rss = _backfill(workdir, url, "mlmd.sqlite")
        mlmd = f"sqlite:///{workdir / 'mlmd.sqlite'}"
        again, again_wall, again_rss = cli_measured(
            ["reconcile", "--no-cluster", "--from-kfp-db", url, "--mlmd", mlmd, "-o", "json"]
        )
        second = json.loads(again.stdout)
        keys = [e.external_id for e in open_store(mlmd).get_executions()]
    finally:
        drop_database(database)

    runs_per_s = runs / wall
    read_runs_per_s = runs / read_s
    report.figures = {
        "runs_per_s": round(runs_per_s, 1),
        "steps_per_s": round(runs * STEPS / wall, 1),
        "wall_s": round(wall, 3),
        "peak_rss_mb": round(rss, 1),
        "peak_rss_mb_tenth": round(small_rss, 1),
        "executions": len(keys),
        "duplicates": len(keys) - len(set(keys)),
        "errors": len(full["errors"]),
        "unrecoverable": full["stored_runs"]["unrecoverable_total"],
        "second_pass_writes": sum(second["actions"].values()),
    }
    report.bounds = {
        "baseline_rss_mb": round(baseline_rss, 1),
        "read_runs_per_s": round(read_runs_per_s, 1),
        "read_s": round(read_s, 3),
        "read_steps": read_steps,
    }
    report.ratios = {
        "peak_rss_to_baseline": ratio(rss, baseline_rss),
        "peak_rss_to_tenth": ratio(rss, small_rss),
        "runs_per_s_to_read": ratio(runs_per_s, read_runs_per_s),
    }
    report.target("peak_rss_to_tenth", report.ratios["peak_rss_to_tenth"], 1.25)
    report.target("duplicates", report.figures["duplicates"], 0)
    report.target("second_pass_writes", report.figures["second_pass_writes"], 0)
    report.details = {
        "fill_s": round(fill_s, 3),
        "tenth": {"runs": tenth, "wall_s": round(small_wall, 3), "steps": small["stored_runs"]["steps"]},
        "actions": full["actions"],
        "stored_runs": {k: v for k, v in full["stored_runs"].items() if k != "unrecoverable"},
        "mlmd_transactions": full["mlmd_transactions"],
        "second_pass": {"wall_s": round(again_wall, 3), "peak_rss_mb": round(again_rss, 1)},
    }
    return report
