"""The `kfp-metadata-reconciler` command line.

Exit codes (docs/cli.md): 0 converged (verify: no drift); 1 some pods failed
(listed); 2 usage or configuration error (also: the API server refused a
request, e.g. RBAC); 3 could not reach Kubernetes or MLMD; 4 verify found drift.

Other installed distributions add commands through the entry point group
COMMANDS_GROUP: each entry names a function that adds its subparser and sets its
`handler` (the sandbox distribution adds `sandbox` this way). The product itself
imports none of them.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from importlib.metadata import entry_points

from controller.exits import EXIT_DRIFT, EXIT_OK, EXIT_POD_ERRORS, EXIT_UNREACHABLE, EXIT_USAGE, UsageError

__all__ = ["EXIT_DRIFT", "EXIT_OK", "EXIT_POD_ERRORS", "EXIT_UNREACHABLE", "EXIT_USAGE", "UsageError", "main"]

COMMANDS_GROUP = "kfp_metadata_reconciler.commands"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kfp-metadata-reconciler",
        description="Keep ML Metadata in step with Kubeflow Pipelines v1 steps run by Argo Workflows.",
        epilog="Settings are also read from the environment (KFPMR_*, and the upstream "
        "metadata-writer's names); see docs/configuration.md. Exit codes: 0 converged (verify: no drift), "
        "1 some pods failed, 2 usage/config error, 3 Kubernetes or MLMD unreachable, 4 verify found drift.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    rec = sub.add_parser(
        "reconcile",
        help="run one reconcile pass now",
        description="One pass over a cluster (or a saved dump): write what MLMD lacks and fix pod labels.",
    )
    _scope_flags(rec)
    rec.add_argument(
        "--dry-run", action="store_true", help="print every MLMD write and label change; write nothing"
    )
    rec.set_defaults(handler=lambda args: _manual(args, verify=False))
    ver = sub.add_parser(
        "verify",
        help="report drift without changing anything",
        description="Read-only: report missing, unkeyed and mismatched records, wrong pod labels and "
        "orphaned records, grouped by kind. Exit 0 when clean, 4 when drift was found.",
    )
    _scope_flags(ver)
    ver.set_defaults(handler=lambda args: _manual(args, verify=True))
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
    run.set_defaults(handler=_run)
    _installed_commands(sub)
    return parser


def _installed_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the commands other installed distributions register (e.g. `sandbox`)."""
    for entry in sorted(entry_points(group=COMMANDS_GROUP), key=lambda e: e.name):
        try:
            add_command = entry.load()
        except Exception as exc:  # a broken add-on must not take the product's commands down
            print(f"warning: command {entry.name!r} ({entry.value}) cannot be loaded: {exc}", file=sys.stderr)
            continue
        add_command(sub)


def _scope_flags(command: argparse.ArgumentParser) -> None:
    where = command.add_mutually_exclusive_group()
    where.add_argument(
        "--namespace", "-n", action="append", dest="namespaces", metavar="NS", help="namespace (repeatable)"
    )
    where.add_argument("--all-namespaces", "-A", action="store_true", help="every namespace")
    command.add_argument(
        "--workflow",
        action="append",
        dest="workflows",
        metavar="NAME",
        help="only this workflow (repeatable)",
    )
    command.add_argument(
        "--from-file",
        metavar="FILE.json",
        help="a saved List (kubectl get pods,workflows,workflowtaskresults -A -o json) instead of the "
        "cluster; label changes are then printed, not applied",
    )
    command.add_argument("--kubeconfig", help="kubeconfig file (default: in-cluster, else ~/.kube/config)")
    command.add_argument("--mlmd", metavar="URL", help="MLMD store URL (overrides KFPMR_MLMD_URL)")
    command.add_argument("--output", choices=("text", "json"), default="text", help="report format")


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


def _manual(args: argparse.Namespace, *, verify: bool) -> int:
    from controller.manual import counted_drift, run_manual
    from controller.report_view import (
        print_drift,
        print_plan,
        print_pod_patches,
        print_summary,
        progress_bar,
        summary,
    )
    from controller.settings import load_settings
    from controller.sources import Scope, ScopeError, read_cluster, read_file
    from store.connect import open_store
    from store.errors import StoreUnavailable
    from store.metadata import MetadataStore

    dry_run = verify or args.dry_run
    settings = load_settings(mlmd_url=args.mlmd, kubeconfig=args.kubeconfig)
    options = settings.reconcile_options()
    namespaces = None if args.all_namespaces else args.namespaces or settings.namespaces or None
    scope = Scope(namespaces, args.workflows or [])
    kube = None
    try:
        if args.from_file:
            found = read_file(args.from_file, scope, options)
        else:
            from controller.kube import KubeClient, api_client_from

            kube = KubeClient(api_client_from(settings.kubeconfig))
            found = read_cluster(kube, scope, options)
    except ScopeError as exc:
        raise UsageError(str(exc)) from None
    store = MetadataStore.over(
        open_store(
            settings.store_url(),
            ca_cert_path=settings.mlmd_ca_cert_path,
            max_receive_message_length=settings.mlmd_max_receive_message_length,
        )
    )
    text = args.output == "text"
    terminal = text and sys.stdout.isatty()
    try:
        with progress_bar(terminal, sys.stderr) as progress:
            outcome = run_manual(
                found,
                store,
                options,
                write=not dry_run,
                verify=verify,
                scope=scope,
                kube=kube,
                progress=progress,
            )
    except StoreUnavailable as exc:
        print(f"error: MLMD became unreachable during the pass: {str(exc).splitlines()[0]}", file=sys.stderr)
        return EXIT_UNREACHABLE
    if not text:
        print(json.dumps(summary(outcome, dry_run=dry_run, verify=verify), indent=2, sort_keys=True))
    else:
        if verify:
            print_drift(outcome.drift, sys.stdout)
        elif dry_run:
            print_plan(outcome, sys.stdout)
        elif outcome.offline:
            print_pod_patches(outcome, sys.stdout)
        print_summary(outcome, dry_run=dry_run, verify=verify, out=sys.stdout, table=terminal)
    if verify and counted_drift(outcome):
        return EXIT_DRIFT
    return EXIT_POD_ERRORS if outcome.report.errors else EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit code."""
    from controller.kube import KubeApiError, KubeConfigError, KubeUnavailableError
    from controller.settings import SettingsError
    from store.errors import StoreConfigError, StoreUnavailableError

    args = _parser().parse_args(argv)
    # gRPC's C core logs connection teardown at INFO on stderr; keep stderr for our errors.
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    logging.getLogger("absl").setLevel(logging.ERROR)
    try:
        return int(args.handler(args))
    except (UsageError, SettingsError, StoreConfigError, KubeConfigError, KubeApiError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (StoreUnavailableError, KubeUnavailableError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
