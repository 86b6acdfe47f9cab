"""How `reconcile` and `verify` show their outcome: plain lines, a table on a terminal, or JSON.

Whatever they print went through `reconcile.redact.redact` (an artifact URI or an error
message may carry a credential) and, as text, `reconcile.values.printable` (a name from a
hostile pod may hold a lone surrogate, which no terminal encoding can write).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from typing import Any, TextIO

from controller.drift import Drift, grouped
from controller.logs import redacted_value
from controller.manual import ManualOutcome, PatchLog, counted_drift
from controller.report import Progress
from reconcile.redact import redact
from reconcile.values import printable


def _line(text: str, out: TextIO) -> None:
    """Print one line of the report: credentials masked, unprintable characters escaped."""
    print(printable(redact(text)), file=out)


def summary(outcome: ManualOutcome, *, dry_run: bool, verify: bool) -> dict[str, Any]:
    """The JSON object (and the numbers the text views show)."""
    report = outcome.report
    # The pod patches as they are (a PatchLog: printed line by line, never all decoded at once).
    data = replace(report, pod_patches=[]).to_json()
    data["pod_patches"] = report.pod_patches
    data["dry_run"] = dry_run
    data["offline"] = outcome.offline
    data["pod_patches_applied"] = outcome.patches_applied
    data["steps_without_pod"] = outcome.steps_without_pod
    data["items_ignored_by_kind"] = dict(outcome.items_ignored)
    if outcome.stored is not None:
        data["stored_runs"] = outcome.stored.to_json()
    if verify:
        counted = counted_drift(outcome)
        data["drift"] = {k: [d.to_json() for d in v] for k, v in grouped(outcome.drift).items()}
        data["drift_total"] = len(outcome.drift)
        data["drift_counted"] = len(counted)
        del data["pod_patches"]
    return data


def print_json(
    outcome: ManualOutcome,
    out: TextIO,
    *,
    dry_run: bool,
    verify: bool,
    capabilities: Mapping[str, Any] | None = None,
) -> None:
    """The JSON object on one `--output json` document (credentials masked).

    `capabilities`, when given, is the store's probe result (`capabilities` key).
    """
    data = summary(outcome, dry_run=dry_run, verify=verify)
    patches = data.pop("pod_patches", None)
    if capabilities is not None:
        data["capabilities"] = dict(capabilities)
    data = redacted_value(data)
    if isinstance(patches, PatchLog):
        data["pod_patches"] = patches  # redacted when kept
    elif patches is not None:
        data["pod_patches"] = redacted_value([p.__dict__ for p in patches])
    write_json(data, out)
    out.write("\n")


def write_json(value: Any, out: TextIO, indent: str = "") -> None:
    """`value` as JSON on `out`: objects indented a key a line, each list item on a line of its own.

    What `json.dumps(indent=2)` prints but for list items, in a fraction of the time and
    memory: with an indent, json.dumps runs its Python encoder and builds the whole text,
    which at 50,000 pod patches takes longer than the rest of a no-op pass; here each item
    is one C-encoded line, written as it is made. ASCII escapes: a lone surrogate from a
    hostile pod stays valid JSON text.
    """
    inner = indent + "  "
    if isinstance(value, dict) and value:
        out.write("{")
        for number, (key, item) in enumerate(sorted(value.items())):
            out.write(f"{',' if number else ''}\n{inner}{json.dumps(str(key))}: ")
            write_json(item, out, inner)
        out.write(f"\n{indent}}}")
    elif isinstance(value, PatchLog | list):
        if not value:
            out.write("[]")
            return
        lines = value.lines() if isinstance(value, PatchLog) else (_encoded(item) for item in value)
        out.write("[")
        for number, line in enumerate(lines):
            out.write(f"{',' if number else ''}\n{inner}{line}")
        out.write(f"\n{indent}]")
    else:
        out.write(_encoded(value))


def _encoded(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=True)


def print_plan(outcome: ManualOutcome, out: TextIO) -> None:
    """Every MLMD write and every label change a dry run would make."""
    for plan in outcome.report.plans:
        for kind, detail in plan.actions():
            _line(f"  {kind:<18} {detail}", out)
    print_pod_patches(outcome, out)


def print_pod_patches(outcome: ManualOutcome, out: TextIO) -> None:
    """Every label and annotation change, one pod a line (offline they cannot be applied)."""
    for patch in outcome.report.pod_patches:
        _line(
            f"  {'pod.patch':<18} {patch.namespace}/{patch.pod} "
            f"{json.dumps(patch.patch['metadata'], sort_keys=True)}",
            out,
        )


def print_drift(drift: list[Drift], out: TextIO) -> None:
    """The drift grouped by kind, one item a line under each kind's heading."""
    for kind, items in grouped(drift).items():
        _line(f"{kind} ({len(items)}):", out)
        for item in items:
            _line(f"  {item.subject}: {item.detail}", out)


def _rows(data: dict[str, Any], outcome: ManualOutcome, verify: bool) -> list[tuple[str, str]]:
    rows = [
        ("pods seen", str(data["pods_seen"])),
        ("pods skipped", str(data["pods_skipped"])),
        ("steps rebuilt from Workflow status (pod gone)", str(data["steps_without_pod"])),
    ]
    for reason, count in data["pods_skipped_by_reason"].items():
        rows.append((f"pods skipped: {reason}", str(count)))
    stored = data.get("stored_runs")
    if stored is not None:
        rows.append((f"stored runs read ({stored['source']})", str(stored["runs_read"])))
        rows.append(("stored runs left to the live Workflow", str(stored["runs_live"])))
        rows.append(("steps rebuilt from stored runs", str(stored["steps"])))
        rows.append(("stored runs unrecoverable", str(stored["unrecoverable_total"])))
    for kind, count in data["items_ignored_by_kind"].items():
        rows.append((f"items of other kinds ignored: {kind}", str(count)))
    verb = "MLMD writes planned" if data["dry_run"] or verify else "MLMD writes"
    for kind, count in data["actions"].items():
        rows.append((f"{verb}: {kind}", str(count)))
    if not data["actions"]:
        rows.append((verb, "0"))
    if verify:
        rows.append(("drift found", str(data["drift_total"])))
        if outcome.offline:
            rows.append(("drift counted (labels cannot be fixed offline)", str(data["drift_counted"])))
    else:
        label = "pod label changes " + (
            "(printed, not applied)" if outcome.offline or data["dry_run"] else "applied"
        )
        rows.append(
            (
                label,
                str(
                    data["pod_patches_applied"]
                    if not (outcome.offline or data["dry_run"])
                    else len(outcome.report.pod_patches)
                ),
            )
        )
    rows.append(("inputs waiting for their upstream artifact", str(data["pending_inputs"])))
    rows.append(("steps whose outputs are not reported yet", str(data["pending_outputs"])))
    rows.append(("errors", str(len(data["errors"]))))
    return rows


def print_summary(outcome: ManualOutcome, *, dry_run: bool, verify: bool, out: TextIO, table: bool) -> None:
    """The end-of-run summary: a table on a terminal, plain `name: value` lines otherwise."""
    data = summary(outcome, dry_run=dry_run, verify=verify)
    rows = _rows(data, outcome, verify)
    if table:
        from rich.console import Console
        from rich.table import Table

        view = Table(title="verify" if verify else ("reconcile (dry run)" if dry_run else "reconcile"))
        view.add_column("what")
        view.add_column("count", justify="right")
        for name, value in rows:
            view.add_row(name, value)
        Console(file=out).print(view)
    else:
        for name, value in rows:
            print(f"{name}: {value}", file=out)
    for warning in outcome.report.warnings:
        _line(f"warning: {warning.namespace}/{warning.pod}: {warning.message}", out)
    for lost in outcome.stored.unrecoverable if outcome.stored is not None else []:
        _line(f"unrecoverable: {lost.run}: {lost.reason}: {lost.detail}", out)
    for problem in outcome.report.errors:
        _line(f"error: {problem}", out)


@contextmanager
def progress_bar(enabled: bool, out: TextIO) -> Iterator[Progress | None]:
    """A progress bar over pods, then over steps written, when `enabled` (a terminal)."""
    if not enabled:
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn
    from rich.progress import Progress as Bar

    with Bar(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        console=Console(file=out),
        transient=False,
    ) as bar:
        tasks: dict[str, Any] = {}
        labels = {"pods": "reading pods", "runs": "reading stored runs", "apply": "writing steps"}

        def update(phase: str, done: int, total: int) -> None:
            if phase not in tasks:
                tasks[phase] = bar.add_task(labels.get(phase, phase), total=total)
            bar.update(tasks[phase], completed=done, total=total)

        yield update
