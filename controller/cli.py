"""The `kfp-metadata-reconciler` command line.

Exit codes (docs/cli.md): 0 converged; 1 some pods failed (listed);
2 usage or configuration error; 3 could not reach Kubernetes or MLMD.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

EXIT_OK = 0
EXIT_POD_ERRORS = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3


class UsageError(Exception):
    """A bad flag value or unreadable input file (exit 2)."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kfp-metadata-reconciler",
        description="Keep ML Metadata in step with Kubeflow Pipelines v1 steps run by Argo Workflows.",
        epilog="Settings are also read from the environment (KFPMR_*, and the upstream "
        "metadata-writer's names); see docs/configuration.md. Exit codes: 0 converged, "
        "1 some pods failed, 2 usage/config error, 3 Kubernetes or MLMD unreachable.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    rec = sub.add_parser(
        "reconcile",
        help="run one reconcile pass now",
        description="Run one pass: write what MLMD lacks and list the pod label changes.",
    )
    rec.add_argument(
        "--from-file",
        metavar="PODS.json",
        required=True,
        help="a saved PodList, or a List of Pods, Workflows and WorkflowTaskResults "
        "(kubectl get pods,workflows,workflowtaskresults -A -o json); pod label changes are "
        "printed, not applied",
    )
    rec.add_argument("--mlmd", metavar="URL", help="MLMD store URL (overrides KFPMR_MLMD_URL)")
    rec.add_argument("--dry-run", action="store_true", help="print the plan; write nothing")
    rec.add_argument("--output", choices=("text", "json"), default="text", help="report format")
    run = sub.add_parser(
        "run",
        help="run the controller (what the Deployment runs)",
        description="Reconcile on a schedule and on pod changes until SIGTERM. Flags override settings; "
        "every setting can also come from the environment.",
        epilog=settings_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("--kubeconfig", help="kubeconfig file (default: in-cluster, else ~/.kube/config)")
    run.add_argument("--mlmd", metavar="URL", help="MLMD store URL")
    run.add_argument(
        "--namespace",
        action="append",
        dest="namespaces",
        metavar="NS",
        help="namespace to reconcile (repeatable)",
    )
    run.add_argument("--resync-interval", type=float, metavar="SECONDS", help="seconds between full passes")
    run.add_argument("--health-port", type=int, metavar="PORT", help="port of /healthz, /readyz, /metrics")
    run.add_argument("--no-watch", action="store_true", help="only periodic full passes")
    run.add_argument("--no-leader-election", action="store_true", help="run passes without holding the Lease")
    run.add_argument("--ready-file", metavar="FILE", help="write the bound health port to FILE once serving")

    box = sub.add_parser(
        "sandbox",
        help="run KFP v1 workflows on a stand-in cluster and reconcile them (no cluster needed)",
        description="Start the Kubernetes API emulator, an embedded SQLite MLMD and the Argo/KFP v1 "
        "simulator; run fixture workflows; reconcile until nothing is left to do; print a summary.",
    )
    box.add_argument("--runs", type=int, default=5, help="workflows to run (default 5)")
    box.add_argument(
        "--argo", choices=("3.1", "3.3", "3.5", "3.6"), default="3.5", help="Argo version to act as"
    )
    box.add_argument("--workdir", default=".sandbox", help="where the kubeconfig and MLMD file go")
    box.add_argument(
        "--fixtures", help="folder of compiled KFP v1 workflows (default: ../shared/fixtures/...)"
    )
    box.add_argument("--seed", type=int, default=0, help="simulator seed")
    box.add_argument(
        "--mlmd",
        metavar="URL",
        help="use this MLMD store instead of starting the project's gRPC server over <workdir>/mlmd.sqlite",
    )
    return parser


def settings_help() -> str:
    """Every setting with its environment names and default, for `run --help`."""
    from controller.settings import Settings

    lines = ["settings (environment variables; upstream metadata-writer names accepted):"]
    for name, info in Settings.model_fields.items():
        alias = info.validation_alias
        envs = list(alias.choices) if alias is not None else [f"KFPMR_{name.upper()}"]
        default = info.get_default(call_default_factory=True)
        lines.append(f"  {' | '.join(str(e) for e in envs)}  (default: {default!r})")
        lines.append(f"      {info.description}")
    return "\n".join(lines)


def _run(args: argparse.Namespace) -> int:
    from controller.run import run_controller
    from controller.settings import load_settings

    overrides = {
        "kubeconfig": args.kubeconfig,
        "mlmd_url": args.mlmd,
        "namespaces": args.namespaces,
        "resync_interval_s": args.resync_interval,
        "health_port": args.health_port,
        "watch_enabled": False if args.no_watch else None,
        "leader_election": False if args.no_leader_election else None,
    }
    return run_controller(load_settings(**overrides), ready_file=args.ready_file)


def _sandbox(args: argparse.Namespace) -> int:
    from sandbox.demo import run_demo

    if args.runs < 1:
        raise UsageError("--runs must be at least 1")
    try:
        result = run_demo(
            args.runs,
            profile=args.argo,
            workdir=Path(args.workdir),
            fixtures=args.fixtures,
            seed=args.seed,
            mlmd_url=args.mlmd,
        )
    except FileNotFoundError as exc:
        raise UsageError(str(exc)) from None
    return EXIT_POD_ERRORS if result.errors else EXIT_OK


def load_objects(path: str) -> tuple[list[Any], dict[tuple[str, str], Any], dict[tuple[str, str], Any]]:
    """Pods, taskresults and workflow nodes (both keyed by (namespace, node id)) from a List file."""
    from reconcile.argo import workflow_nodes
    from reconcile.errors import PodError

    try:
        with Path(path).open("rb") as handle:
            document = json.load(handle)
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise UsageError(f"{path} is not JSON: {exc}") from None
    items = document.get("items") if isinstance(document, dict) else None
    if not isinstance(items, list):
        raise UsageError(f"{path} is not a Kubernetes List (no 'items' array)")
    default_kind = "Pod" if document.get("kind") == "PodList" else None
    pods, taskresults, nodes = [], {}, {}
    for item in items:
        kind = item.get("kind", default_kind) if isinstance(item, dict) else None
        if kind == "Pod" or (kind is None and default_kind is None and isinstance(item, dict)):
            pods.append(item)
            continue
        meta = item.get("metadata") or {} if isinstance(item, dict) else {}
        namespace = meta.get("namespace", "default")
        if kind == "WorkflowTaskResult":
            taskresults[(namespace, meta.get("name", ""))] = item
        elif kind == "Workflow":
            try:
                for node_id, node in workflow_nodes(item).items():
                    nodes[(namespace, node_id)] = node
            except PodError as exc:
                print(f"warning: workflow {namespace}/{meta.get('name')}: {exc.message}", file=sys.stderr)
    return pods, taskresults, nodes


def _print_text(report: Any, dry_run: bool) -> None:
    verb = "would write" if dry_run else "wrote"
    if dry_run:
        for plan in report.plans:
            for kind, detail in plan.actions():
                print(f"  {kind:<18} {detail}")
    print(f"pods seen:     {report.pods_seen}")
    skipped = ", ".join(f"{k} {v}" for k, v in sorted(report.pods_skipped.items())) or "none"
    print(f"pods skipped:  {sum(report.pods_skipped.values())} ({skipped})")
    actions = ", ".join(f"{k} {v}" for k, v in sorted(report.actions.items())) or "nothing"
    print(f"MLMD {verb}: {actions}")
    if report.pending_inputs:
        print(f"inputs waiting for their upstream artifact: {report.pending_inputs}")
    if report.pending_outputs:
        print(f"steps whose outputs are not reported yet: {report.pending_outputs}")
    print(f"pod label changes (not applied from a file): {len(report.pod_patches)}")
    for patch in report.pod_patches:
        print(f"  {patch.namespace}/{patch.pod}: {json.dumps(patch.patch['metadata'], sort_keys=True)}")
    for warning in report.warnings:
        print(f"warning: {warning.namespace}/{warning.pod}: {warning.message}")
    print(f"errors:        {len(report.errors)}")
    for problem in report.errors:
        print(f"  {problem}")


def _reconcile_file(args: argparse.Namespace) -> int:
    from controller.reconcile_pass import STORE_DOWN, reconcile_pods
    from controller.settings import load_settings
    from store.connect import open_store
    from store.types import TypeRegistry

    settings = load_settings(mlmd_url=args.mlmd)
    pods, taskresults, nodes = load_objects(args.from_file)
    store = open_store(
        settings.store_url(),
        ca_cert_path=settings.mlmd_ca_cert_path,
        max_receive_message_length=settings.mlmd_max_receive_message_length,
    )
    try:
        report = reconcile_pods(
            pods,
            store,
            TypeRegistry(store),
            settings.reconcile_options(),
            dry_run=args.dry_run,
            taskresults=taskresults,
            nodes=nodes,
        )
    except STORE_DOWN as exc:
        print(f"error: MLMD became unreachable during the pass: {str(exc).splitlines()[0]}", file=sys.stderr)
        return EXIT_UNREACHABLE
    if args.output == "json":
        print(json.dumps({**report.to_json(), "dry_run": args.dry_run}, indent=2, sort_keys=True))
    else:
        _print_text(report, args.dry_run)
    return EXIT_POD_ERRORS if report.errors else EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit code."""
    from controller.kube import KubeConfigError
    from controller.settings import SettingsError
    from store.connect import StoreConfigError, StoreUnavailableError

    args = _parser().parse_args(argv)
    # gRPC's C core logs connection teardown at INFO on stderr; keep stderr for our errors.
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    logging.getLogger("absl").setLevel(logging.ERROR)
    try:
        if args.command == "reconcile":
            return _reconcile_file(args)
        if args.command == "sandbox":
            return _sandbox(args)
        if args.command == "run":
            return _run(args)
    except (UsageError, SettingsError, StoreConfigError, KubeConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except StoreUnavailableError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    except KeyboardInterrupt:
        return 130
    return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
