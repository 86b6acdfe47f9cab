"""`python -m bench dump`: `reconcile --from-file` of 10,000 and 50,000-pod dumps through the real CLI.

Per size: a dump as `kubectl get pods,workflows,workflowtaskresults -A -o json` writes it
(every pod, then every Workflow; an item a line, without kubectl's 4-space indent: Python's
encoder indents 30x slower, and whitespace is the cheapest part of a parse), of the sandbox
simulator's completed 5-step
KFP v1 workflows (Argo 3.5 shapes: the template on three containers, managedFields, a Workflow
with its `status.nodes`), written batch by batch so the bench never holds it. Then, each in a
child process whose own rusage is read (`os.wait4`): the converging `reconcile --from-file`
into an empty SQLite store (pods/s, peak RSS, CPU), the no-op second pass, and the bound
measured in the same run on the same file: parsing it (`parse_s`: every item through the
standard library's C parser, one at a time, as `--from-file` reads it) and, up to 10,000 pods,
`json.load` of the whole file (what `--from-file` did before, with its peak RSS). After the
second pass, `mlmd_read_s`: the converged store's reads of every chunk's steps alone (the
dump read into chunks and the desired steps built untimed, as `--from-file` does); with the
parse, the floor of the no-op pass (`no_op_floor_s`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import Report, ratio

REPO = Path(__file__).resolve().parents[1]
BATCH_WORKFLOWS = 200
JSON_LOAD_UP_TO = 10_000  # beyond, json.load of the whole file takes GBs on a shared machine
RSS_LIMIT_MB = 400
SECOND_PASS_LIMIT = 1.5

_PEAK = "peak_rss_mb="
# Each child prints its own peak RSS (VmHWM) last on stderr.
_REPORT_PEAK = f"""
from bench.common import peak_rss_mb
print("{_PEAK}" + str(round(peak_rss_mb(), 1)), file=sys.stderr)
"""
# The bound, in a child of its own: every item parsed (and dropped) as --from-file reads them.
_PARSE = (
    """
import json, sys, time
from controller.dump_source import DumpReader
started = time.perf_counter()
with open(sys.argv[1], "rb") as handle:
    count = sum(1 for _ in DumpReader(handle, sys.argv[1]).items())
print(json.dumps({"items": count, "seconds": time.perf_counter() - started}))
"""
    + _REPORT_PEAK
)
_JSON_LOAD = (
    """
import json, sys, time
started = time.perf_counter()
with open(sys.argv[1], "rb") as handle:
    count = len(json.load(handle)["items"])
print(json.dumps({"items": count, "seconds": time.perf_counter() - started}))
"""
    + _REPORT_PEAK
)
# The other bound, after the second pass: the converged store's reads of every chunk's steps.
# The dump is read into chunks and each chunk's desired steps built as `reconcile --from-file`
# does (untimed); only `read_actual`, as reconcile_chunk calls it, is timed.
_MLMD_READ = (
    """
import json, sys, time
from controller.dump_source import read_dump
from controller.gc_pause import paused_gc
from controller.reconcile_pass import desired_steps, with_podless
from controller.report import PassReport
from controller.settings import load_settings
from controller.sources import Scope
from store.connect import open_store
from store.metadata import MetadataStore

settings = load_settings(mlmd_url=sys.argv[2])
options = settings.reconcile_options()
store = MetadataStore.over(open_store(settings.store_url()))
store.open()  # the capability probe, untimed
started = time.perf_counter()
source = read_dump(sys.argv[1], Scope(settings.namespaces or None), options, settings.chunk_pods)
read_s, desired_s, seconds = time.perf_counter() - started, 0.0, 0.0
chunks = steps = found_executions = 0
try:
    with paused_gc():  # as run_pass holds it
        for chunk in source.chunks():
            started = time.perf_counter()
            found = with_podless(
                desired_steps(chunk.pods, options, PassReport(), chunk.taskresults, chunk.nodes), chunk
            )
            desired = [step.desired for step in found.values()]
            desired_s += time.perf_counter() - started
            started = time.perf_counter()
            actual = store.read_actual(desired)
            seconds += time.perf_counter() - started
            chunks, steps = chunks + 1, steps + len(desired)
            found_executions += len(actual.executions)
            del actual
finally:
    source.close()
print(json.dumps({
    "seconds": seconds, "chunks": chunks, "steps": steps, "found_executions": found_executions,
    "read_dump_s": round(read_s, 3), "desired_s": round(desired_s, 3),
}))
"""
    + _REPORT_PEAK
)
# The console script's function, as `kfp-metadata-reconciler` runs it.
_CLI = (
    """
import sys
from controller.cli import main
code = main(sys.argv[1:])
"""
    + _REPORT_PEAK
    + "sys.exit(code)\n"
)


def write_dump(path: Path, workflows: int, steps: int = 5) -> dict[str, int]:
    """A dump of `workflows` completed chains; returns counts by kind and the file's bytes."""
    from sandbox.objectstore import ObjectStore
    from sandbox.simulator.runner import chain_workflow, generate_load

    counts = {"Pod": 0, "Workflow": 0, "WorkflowTaskResult": 0}
    later = path.with_suffix(".rest")
    first = True
    with path.open("w", encoding="utf-8") as out, later.open("w", encoding="utf-8") as rest:
        out.write('{\n    "apiVersion": "v1",\n    "items": [\n')
        for start in range(0, workflows, BATCH_WORKFLOWS):
            cluster = ObjectStore()
            count = min(BATCH_WORKFLOWS, workflows - start)
            # A name per batch: each batch is simulated apart, so names must not collide.
            base = chain_workflow(steps, name=f"dump-b{start // BATCH_WORKFLOWS}")
            generate_load(cluster, workflows=count, steps=steps, profile="3.5", seed=start, workflow=base)
            for resource, kind in (("pods", "Pod"), ("workflows", "Workflow"), ("workflowtaskresults", None)):
                for obj in cluster.list(resource):
                    counts[kind or "WorkflowTaskResult"] += 1
                    if kind == "Pod":
                        out.write(("" if first else ",\n") + json.dumps(obj))
                        first = False
                    else:  # kubectl prints every pod before any Workflow: these go after them
                        rest.write(json.dumps(obj) + "\n")
    with path.open("a", encoding="utf-8") as out, later.open(encoding="utf-8") as rest:
        for line in rest:
            out.write(("" if first else ",\n") + line.rstrip("\n"))
            first = False
        out.write(
            '\n    ],\n    "kind": "List",\n    "metadata": {\n        "resourceVersion": ""\n    }\n}\n'
        )
    later.unlink()
    return {**counts, "bytes": path.stat().st_size}


def measured(args: list[str], env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run `args` in a child and read that child's own rusage (CPU) with os.wait4.

    Its peak RSS is the child's own VmHWM, which it prints as its last stderr line
    (`_PEAK`): ru_maxrss starts from the parent's at fork, and the parent has just
    simulated the workflows.
    """
    started = time.perf_counter()
    with open(os.devnull, "rb") as stdin:
        process = subprocess.Popen(
            args,
            stdin=stdin,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=REPO,
            env={**os.environ, **(env or {})},
        )
        assert process.stdout is not None and process.stderr is not None
        # Outputs are small (a JSON report, or a count): read them to the end, then reap.
        out = process.stdout.read()
        err = process.stderr.read()
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        process.stdout.close()
        process.stderr.close()
    lines = err.decode().splitlines()
    peak = float(lines.pop()[len(_PEAK) :]) if lines and lines[-1].startswith(_PEAK) else None
    return {
        "wall_s": round(time.perf_counter() - started, 3),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 3),
        "peak_rss_mb": peak,
        "returncode": process.returncode,
        "stdout": out.decode(),
        "stderr": "\n".join(lines)[-2000:],
    }


def _bound(code: str, dump: Path, *args: str) -> dict[str, Any]:
    """A bound on the dump in a child: its own timed seconds (not the child's start), CPU, peak RSS.

    Whatever else the child prints beside `seconds` and `items` is kept too.
    """
    run = measured([sys.executable, "-c", code, str(dump), *args])
    assert run["returncode"] == 0, run["stderr"]
    printed = json.loads(run["stdout"])
    return {
        "wall_s": round(printed.pop("seconds"), 3),
        "cpu_s": run["cpu_s"],
        "peak_rss_mb": run["peak_rss_mb"],
        **{k: v for k, v in printed.items() if k != "items"},
    }


def one_size(workdir: Path, workflows: int) -> dict[str, Any]:
    """Dump, bound, first and second pass at one size."""
    dump = workdir / f"dump-{workflows}.json"
    started = time.perf_counter()
    counts = write_dump(dump, workflows)
    point: dict[str, Any] = {
        "pods": counts["Pod"],
        "dump": counts,
        "write_dump_s": round(time.perf_counter() - started, 1),
    }
    point["parse"] = _bound(_PARSE, dump)
    if counts["Pod"] <= JSON_LOAD_UP_TO:
        point["json_load"] = _bound(_JSON_LOAD, dump)
    url = f"sqlite:///{workdir}/mlmd-{workflows}.sqlite"
    command = [
        sys.executable,
        "-c",
        _CLI,
        "reconcile",
        "--from-file",
        str(dump),
        "--mlmd",
        url,
        "--output",
        "json",
    ]
    for name in ("first_pass", "second_pass"):
        run = measured(command)
        report = json.loads(run["stdout"]) if run["returncode"] in (0, 1) else {}
        point[name] = {
            **{k: run[k] for k in ("wall_s", "cpu_s", "peak_rss_mb", "returncode")},
            "pods_per_s": round(counts["Pod"] / run["wall_s"], 1) if run["wall_s"] else None,
            "actions": report.get("actions"),
            "errors": len(report.get("errors", [])),
            "pods_seen": report.get("pods_seen"),
            "mlmd_transactions": report.get("mlmd_transactions"),
            "stderr": run["stderr"] if run["returncode"] not in (0, 1) else "",
        }
    point["mlmd_read"] = _bound(_MLMD_READ, dump, url)  # the store the first pass converged
    dump.unlink()
    return point


def dump_scenario(workdir: Path, workflow_counts: list[int]) -> Report:
    """The `dump` scenario at each size (workflows of 5 pods)."""
    report = Report("dump", {"workflows": workflow_counts, "steps": 5, "profile": "3.5"})
    points = [one_size(workdir, count) for count in workflow_counts]
    report.details["points"] = points
    for point in points:
        pods, first, second = point["pods"], point["first_pass"], point["second_pass"]
        tag = f"{pods}"
        report.figures[f"pods_per_s_{tag}"] = first["pods_per_s"]
        report.figures[f"peak_rss_mb_{tag}"] = max(first["peak_rss_mb"], second["peak_rss_mb"])
        report.figures[f"second_pass_s_{tag}"] = second["wall_s"]
        report.bounds[f"parse_s_{tag}"] = point["parse"]["wall_s"]
        report.ratios[f"second_pass_to_parse_{tag}"] = ratio(second["wall_s"], point["parse"]["wall_s"])
        report.ratios[f"first_pass_to_parse_{tag}"] = ratio(first["wall_s"], point["parse"]["wall_s"])
        # What the no-op pass cannot avoid: parsing the file and reading MLMD for every step.
        report.bounds[f"mlmd_read_s_{tag}"] = point["mlmd_read"]["wall_s"]
        floor = round(point["parse"]["wall_s"] + point["mlmd_read"]["wall_s"], 3)
        report.bounds[f"no_op_floor_s_{tag}"] = floor
        report.ratios[f"second_pass_to_no_op_floor_{tag}"] = ratio(second["wall_s"], floor)
        if "json_load" in point:
            report.bounds[f"json_load_s_{tag}"] = point["json_load"]["wall_s"]
            report.bounds[f"json_load_peak_rss_mb_{tag}"] = point["json_load"]["peak_rss_mb"]
            report.ratios[f"second_pass_to_json_load_{tag}"] = ratio(
                second["wall_s"], point["json_load"]["wall_s"]
            )
    largest = points[-1]
    tag = str(largest["pods"])
    report.target(f"peak_rss_mb_{tag}", report.figures[f"peak_rss_mb_{tag}"], RSS_LIMIT_MB)
    report.target(
        f"second_pass_to_parse_{tag}", report.ratios[f"second_pass_to_parse_{tag}"], SECOND_PASS_LIMIT
    )
    # The same target against json.load of the whole file (the other bound), where it ran.
    loaded = [p for p in points if "json_load" in p]
    if loaded:
        ratio_name = f"second_pass_to_json_load_{loaded[-1]['pods']}"
        report.target(ratio_name, report.ratios[ratio_name], SECOND_PASS_LIMIT)
    return report
