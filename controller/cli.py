"""The `kfp-metadata-reconciler` command line.

Exit codes (docs/cli.md): 0 converged (verify: no drift); 1 some pods failed
(listed); 2 usage or configuration error (also: no MLMD store configured, a
kubeconfig that cannot be used, the API server refusing a request, e.g. RBAC);
3 could not reach or open Kubernetes or MLMD (also: a store that does not exist
for a read-only command, a refused login, a database of another schema version);
4 verify found drift; 5 an unexpected failure (a bug). Every fatal error is one `error:` line on stderr, with
credentials masked; an unknown or bad flag is reported by its command's parser.

Other installed distributions add commands through the entry point group
COMMANDS_GROUP: each entry names a function that adds its subparser and sets its
`handler` (the sandbox distribution adds `sandbox` this way). The product itself
imports none of them.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from importlib.metadata import entry_points
from typing import Any

from controller.exits import (
    EXIT_DRIFT,
    EXIT_INTERNAL,
    EXIT_OK,
    EXIT_POD_ERRORS,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    UsageError,
)

__all__ = ["EXIT_DRIFT", "EXIT_OK", "EXIT_POD_ERRORS", "EXIT_UNREACHABLE", "EXIT_USAGE", "UsageError", "main"]

COMMANDS_GROUP = "kfp_metadata_reconciler.commands"
LOG_LEVELS = ("debug", "info", "warning", "error")


def version_text() -> str:
    """What `--version` prints: this package's version, ml-metadata's and Python's."""
    from controller.metrics import build_labels

    versions = build_labels()
    return (
        f"kfp-metadata-reconciler {versions['version']} "
        f"(ml-metadata {versions['ml_metadata']}, Python {versions['python']})"
    )


class _VersionAction(argparse.Action):
    """`--version`: print the versions and exit 0 (read when asked, not at every start)."""

    def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> None:
        print(version_text())
        parser.exit()


def bind_address(text: str) -> tuple[str, int]:
    """controller-runtime's bind address (`:8080`, `host:8080`, `[::1]:8080`) as (host, port).

    An empty host means every interface. controller-runtime's `0` (switch metrics off) is
    refused: /metrics shares its address with /healthz and /readyz here.
    """
    if text.strip() == "0":
        raise argparse.ArgumentTypeError(
            "'0' would switch /metrics off, but /metrics shares its address with /healthz and /readyz"
        )
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not an address: use :PORT or HOST:PORT")
    host = host.removeprefix("[").removesuffix("]")
    return host or "0.0.0.0", int(port)


def _bool_value(text: str) -> bool:
    value = text.strip().lower()
    if value in ("true", "1", "yes"):
        return True
    if value in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"{text!r} is not a boolean: use true or false")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kfp-metadata-reconciler",
        description="Keep ML Metadata in step with Kubeflow Pipelines v1 steps run by Argo Workflows.",
        epilog="Settings are also read from the environment (KFPMR_*, and the upstream "
        "metadata-writer's names); see docs/configuration.md. Exit codes: 0 converged (verify: no drift), "
        "1 some pods failed, 2 usage/config error, 3 Kubernetes or MLMD unreachable, 4 verify found drift, "
        "5 a bug of ours.",
    )
    parser.add_argument("--version", action=_VersionAction, help="print the versions and exit")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    rec = sub.add_parser(
        "reconcile",
        help="run one reconcile pass now",
        description="One pass over a cluster (or a saved dump), and over the runs KFP or Argo stored "
        "(--from-kfp-db, --from-argo-archive): write what MLMD lacks and fix pod labels.",
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
    _kube_flags(run)
    _store_flag(run)
    run.add_argument(
        "--namespace",
        "-n",
        action="append",
        dest="namespaces",
        metavar="NS",
        help="namespace to reconcile (repeatable; default: the namespaces setting, else all)",
    )
    run.add_argument("--resync-interval", type=float, metavar="SECONDS", help="seconds between full passes")
    run.add_argument("--health-port", type=int, metavar="PORT", help="port of /healthz, /readyz, /metrics")
    for flag in ("--metrics-bind-address", "--health-probe-bind-address"):
        run.add_argument(
            flag,
            type=bind_address,
            dest=flag.removeprefix("--").replace("-", "_"),
            metavar="[HOST]:PORT",
            help="controller-runtime's name: the address of /metrics, /healthz and /readyz (one server)",
        )
    run.add_argument("--no-watch", action="store_true", help="only periodic full passes")
    run.add_argument(
        "--no-leader-election",
        action="store_const",
        const=False,
        dest="leader_election",
        help="run passes without holding the Lease",
    )
    run.add_argument(
        "--leader-elect",
        nargs="?",
        const=True,
        type=_bool_value,
        dest="leader_election",
        metavar="BOOL",
        help="controller-runtime's name: --leader-elect=false is --no-leader-election (default: true)",
    )
    run.add_argument("--ready-file", metavar="FILE", help="write the bound health port to FILE once serving")
    _log_flag(run)
    run.set_defaults(handler=_run)
    _installed_commands(sub)
    for command in sub.choices.values():
        command.set_defaults(command_parser=command)
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
    _stored_flags(command)
    _kube_flags(command)
    _store_flag(command)
    command.add_argument(
        "--output", "-o", choices=("text", "json"), default="text", help="report format (default: text)"
    )
    _log_flag(command)


def _stored_flags(command: argparse.ArgumentParser) -> None:
    stored = command.add_mutually_exclusive_group()
    stored.add_argument(
        "--from-kfp-db",
        metavar="URL",
        help="also read the runs KFP stored in its mlpipeline database (mysql://user@host/mlpipeline or "
        "postgresql://...; read-only; password from the URL or KFPMR_KFP_DB_PASSWORD)",
    )
    stored.add_argument(
        "--from-argo-archive",
        metavar="URL",
        help="also read the Workflows in Argo's workflow archive (postgresql://... or mysql://...; "
        "read-only; password from the URL or KFPMR_ARGO_ARCHIVE_PASSWORD)",
    )
    command.add_argument(
        "--no-cluster",
        action="store_true",
        help="with a stored source: read only it, not the cluster (no Kubernetes access)",
    )
    command.add_argument(
        "--since",
        metavar="TIME",
        help="stored runs that finished at or after TIME (ISO 8601, UTC unless a zone is given)",
    )
    command.add_argument("--until", metavar="TIME", help="stored runs that finished before TIME")
    command.add_argument(
        "--run-id",
        action="append",
        dest="run_ids",
        metavar="ID",
        help="only this KFP run id of the stored source (repeatable)",
    )


def _kube_flags(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--kubeconfig", help="kubeconfig file (default: in-cluster, else $KUBECONFIG or ~/.kube/config)"
    )
    command.add_argument("--context", metavar="NAME", help="kubeconfig context (default: its current one)")


def _store_flag(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--mlmd",
        metavar="URL",
        help="MLMD store URL (overrides KFPMR_MLMD_URL and METADATA_GRPC_SERVICE_HOST/_PORT); "
        "one of them is required",
    )


def _log_flag(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--log-level",
        type=str.lower,
        choices=LOG_LEVELS,
        help="log level (overrides KFPMR_LOG_LEVEL; default: info for run, warning otherwise)",
    )


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

    address = _one_address(args)
    overrides = {
        "kubeconfig": args.kubeconfig,
        "kube_context": args.context,
        "mlmd_url": args.mlmd,
        "namespaces": args.namespaces,
        "resync_interval_s": args.resync_interval,
        "health_host": address[0] if address else None,
        "health_port": address[1] if address else args.health_port,
        "watch_enabled": False if args.no_watch else None,
        "leader_election": args.leader_election,
        "log_level": args.log_level,
    }
    return run_controller(load_settings(**overrides), ready_file=args.ready_file)


def _one_address(args: argparse.Namespace) -> tuple[str, int] | None:
    """The address the bind-address flags agree on (one server serves metrics and probes)."""
    given = {a for a in (args.metrics_bind_address, args.health_probe_bind_address) if a is not None}
    if len(given) > 1:
        raise UsageError(
            "--metrics-bind-address and --health-probe-bind-address differ, but /metrics, /healthz "
            "and /readyz are served on one address: give one of them, or the same value"
        )
    address = next(iter(given), None)
    if address is not None and args.health_port is not None and args.health_port != address[1]:
        raise UsageError("--health-port differs from the port of the bind-address flag: give one of them")
    return address


def _stored_request(args: argparse.Namespace) -> tuple[str, str] | None:
    """(kind, URL) of the stored source asked for, or None; flags that need one are checked."""
    from controller.stored_sources import ARGO_ARCHIVE, KFP_DB

    if args.from_kfp_db:
        return KFP_DB, args.from_kfp_db
    if args.from_argo_archive:
        return ARGO_ARCHIVE, args.from_argo_archive
    needs = [
        flag
        for flag, value in (
            ("--since", args.since),
            ("--until", args.until),
            ("--run-id", args.run_ids),
            ("--no-cluster", args.no_cluster),
        )
        if value
    ]
    if needs:
        raise UsageError(
            f"{', '.join(needs)} need(s) a stored source: --from-kfp-db URL or --from-argo-archive URL"
        )
    return None


def _run_scope(args: argparse.Namespace, namespaces: list[str] | None) -> Any:
    """The stored source's RunScope from the scope flags; a bad time is a usage error."""
    from controller.stored_sources import parse_time
    from history import RunScope

    try:
        since = parse_time(args.since) if args.since else None
        until = parse_time(args.until) if args.until else None
    except ValueError as exc:
        raise UsageError(f"--since/--until: {exc}") from None
    if since is not None and until is not None and since >= until:
        raise UsageError(f"--since ({since.isoformat()}) must be before --until ({until.isoformat()})")
    return RunScope(
        since=since,
        until=until,
        run_ids=frozenset(args.run_ids or ()),
        namespaces=frozenset(namespaces or ()),
        workflows=frozenset(args.workflows or ()),
    )


def _manual(args: argparse.Namespace, *, verify: bool) -> int:
    from controller.manual import run_manual
    from controller.report_view import progress_bar
    from controller.settings import load_settings
    from controller.sources import PassInputs, Scope, ScopeError, read_cluster
    from controller.stored_sources import ARGO_ARCHIVE, StoredChunks, open_stored_source
    from store.connect import open_store
    from store.errors import StoreUnavailable
    from store.metadata import MetadataStore

    dry_run = verify or args.dry_run
    requested = _stored_request(args)
    if args.no_cluster and args.from_file:
        raise UsageError("--no-cluster and --from-file: give one of them")
    settings = load_settings(
        mlmd_url=args.mlmd, kubeconfig=args.kubeconfig, kube_context=args.context, log_level=args.log_level
    )
    _setup_logging(settings, default_level="WARNING")
    options = settings.reconcile_options()
    namespaces = None if args.all_namespaces else args.namespaces or settings.namespaces or None
    scope = Scope(namespaces, args.workflows or [])
    run_scope = _run_scope(args, namespaces) if requested else None
    # The store first: a missing or unreachable one ends the command before a long read.
    # A dry run and verify open it read-only, so they never create a file, database or schema.
    store = MetadataStore.over(
        open_store(
            settings.store_url(),
            read_only=dry_run,
            ca_cert_path=settings.mlmd_ca_cert_path,
            max_receive_message_length=settings.mlmd_max_receive_message_length,
        )
    )
    # Then the stored source: a wrong URL, password or table layout ends it before the cluster is read.
    source = None
    stored = None
    if requested is not None:
        kind, url = requested
        secret = settings.argo_archive_password if kind == ARGO_ARCHIVE else settings.kfp_db_password
        source, reading = open_stored_source(
            kind,
            url,
            password=secret.get_secret_value() if secret is not None else None,
            cluster_name=settings.argo_archive_cluster_name,
        )
        assert run_scope is not None
        stored = StoredChunks(source, run_scope, options, reading)
    kube = None
    live: Any = None
    try:
        try:
            if args.from_file:
                from controller.dump_source import read_dump

                # Read through before the pass: a dump that is not whole is exit 2, nothing written.
                live = read_dump(args.from_file, scope, options, settings.chunk_pods)
            elif args.no_cluster:
                live = PassInputs(pods=[], taskresults={}, nodes={}, podless_steps=[])
            else:
                from controller.kube import KubeClient, api_client_from

                kube = KubeClient(api_client_from(settings.kubeconfig, settings.kube_context))
                # With a stored source, a workflow the cluster no longer has may be stored.
                live = read_cluster(kube, scope, options, settings.chunk_pods, missing_ok=stored is not None)
        except ScopeError as exc:
            raise UsageError(str(exc)) from None
        text = args.output == "text"
        terminal = text and sys.stdout.isatty()
        try:
            with progress_bar(terminal, sys.stderr) as progress:
                outcome = run_manual(
                    live,
                    store,
                    options,
                    write=not dry_run,
                    verify=verify,
                    scope=scope,
                    kube=kube,
                    progress=progress,
                    stored=stored,
                    # A stored source read in part cannot tell an orphan from a run out of scope.
                    orphans_checked=run_scope is None or not (run_scope.timed or run_scope.run_ids),
                )
        except StoreUnavailable as exc:
            print(_error_line(f"MLMD became unreachable during the pass: {exc}"), file=sys.stderr)
            return EXIT_UNREACHABLE
    finally:
        if source is not None:
            source.close()
        if live is not None and hasattr(live, "close"):
            live.close()  # a dump's spill file
    return _show(outcome, args.output, store.capabilities, dry_run=dry_run, verify=verify, terminal=terminal)


def _show(
    outcome: Any, output: str, capabilities: Any, *, dry_run: bool, verify: bool, terminal: bool
) -> int:
    """Print the outcome of `reconcile` or `verify` as asked; returns the exit code.

    `capabilities` is what the store's probe found when the pass opened it.
    """
    from controller.manual import counted_drift
    from controller.report_view import print_drift, print_json, print_plan, print_pod_patches, print_summary

    if output == "json":
        print_json(outcome, sys.stdout, dry_run=dry_run, verify=verify, capabilities=capabilities.to_json())
    else:
        if verify:
            print_drift(outcome.drift, sys.stdout)
        elif dry_run:
            print_plan(outcome, sys.stdout)
        elif outcome.offline:
            print_pod_patches(outcome, sys.stdout)
        print(capabilities.summary(), file=sys.stdout)
        print_summary(outcome, dry_run=dry_run, verify=verify, out=sys.stdout, table=terminal)
    if verify and counted_drift(outcome):
        return EXIT_DRIFT
    return EXIT_POD_ERRORS if outcome.report.errors else EXIT_OK


def _setup_logging(settings: Any, *, default_level: str) -> None:
    """Log lines on stderr: `--log-level`, else the log_level setting if set, else `default_level`."""
    from controller.logs import setup_logging

    level = settings.log_level if "log_level" in settings.model_fields_set else default_level
    setup_logging(settings.log_json, level)


def _error_line(problem: object) -> str:
    """`error: <problem>`, credentials masked and unprintable characters escaped.

    A problem of several lines (settings: one per bad value) gives one `error:` line each.
    """
    from reconcile.redact import redact
    from reconcile.values import printable

    text = str(problem) or type(problem).__name__
    lines = [line.strip() for line in text.splitlines() if line.strip()] or [text]
    return "\n".join("error: " + printable(redact(line)) for line in lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit code."""
    # gRPC's C core logs connection teardown at INFO on stderr; keep stderr for our errors.
    # Set before anything imports grpc (store.errors below does), or the core never reads it.
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    from controller.kube import KubeApiError, KubeConfigError, KubeUnavailableError
    from controller.settings import SettingsError
    from history.errors import SourceConfigError, SourceLayoutError, SourceUnavailableError
    from store.errors import StoreConfigError, StoreUnavailableError

    args = _parse(argv)
    logging.getLogger("absl").setLevel(logging.ERROR)
    try:
        return int(args.handler(args))
    except (
        UsageError,
        SettingsError,
        StoreConfigError,
        KubeConfigError,
        KubeApiError,
        SourceConfigError,
        SourceLayoutError,
    ) as exc:
        print(_error_line(exc), file=sys.stderr)
        return EXIT_USAGE
    except (StoreUnavailableError, KubeUnavailableError, SourceUnavailableError) as exc:
        print(_error_line(exc), file=sys.stderr)
        return EXIT_UNREACHABLE
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # a bug of ours: still one line, never a traceback on stderr
        logging.getLogger(__name__).debug("unexpected failure", exc_info=True)
        print(
            _error_line(
                f"unexpected failure, a bug of the reconciler ({type(exc).__name__}: {exc}); "
                "--log-level debug logs its traceback"
            ),
            file=sys.stderr,
        )
        return EXIT_INTERNAL


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    """The parsed command line; a flag no parser knows is reported by its command's parser (exit 2)."""
    parser = _parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        # argparse would have the top-level parser report them, with the top-level usage.
        command: argparse.ArgumentParser = args.command_parser
        command.error(f"unrecognized arguments: {' '.join(unknown)}")
    return args


if __name__ == "__main__":
    # `python -m controller.cli` runs this file as __main__, a second copy of the module; the
    # errors main() catches all live in other modules (UsageError in controller/exits.py), so
    # the commands other distributions add raise the very classes it catches.
    sys.exit(main())
