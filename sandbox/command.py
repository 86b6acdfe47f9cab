"""The `sandbox` command of `kfp-metadata-reconciler`, added by the sandbox distribution.

sandbox/pyproject.toml names `add_command` in the entry point group the command line
reads (controller/cli.py, COMMANDS_GROUP): with the sandbox installed the product's CLI
has the command, and the product itself never imports the sandbox.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from sandbox.mlmd_venvs import LEGACY_VERSIONS


def add_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `sandbox` to the command line's subcommands."""
    box = commands.add_parser(
        "sandbox",
        help="run KFP v1 workflows on a stand-in cluster and reconcile them (no cluster needed)",
        description="Start the Kubernetes API emulator, an embedded SQLite MLMD and the Argo/KFP v1 "
        "simulator; run the project's own compiled KFP v1 pipelines; reconcile until nothing is left "
        "to do; print a summary.",
    )
    box.add_argument("--runs", type=int, default=5, help="workflows to run (default 5)")
    box.add_argument(
        "--argo", choices=("3.1", "3.3", "3.5", "3.6"), default="3.5", help="Argo version to act as"
    )
    box.add_argument(
        "--workdir", default=".sandbox", help="where the kubeconfig, MLMD file and cluster dump go"
    )
    box.add_argument(
        "--pipelines",
        metavar="DIR",
        help="run the compiled KFP v1 workflows (*.yaml) in DIR instead of the project's own pipelines",
    )
    box.add_argument("--seed", type=int, default=0, help="simulator seed")
    box.add_argument(
        "--mlmd",
        metavar="URL",
        help="use this MLMD store instead of starting the project's gRPC server over <workdir>/mlmd.sqlite",
    )
    box.add_argument(
        "--keep",
        action="store_true",
        help="after the runs, keep the emulated cluster, MLMD and the controller up until Ctrl-C, and "
        "print kubectl, verify and reconcile --dry-run commands that work against them",
    )
    box.add_argument(
        "--mlmd-version",
        choices=(*LEGACY_VERSIONS, "current"),
        default="current",
        help="the MLMD server to start over <workdir>/mlmd.sqlite: 1.0.0 (KFP 1.7), 1.5.0 (KFP 1.8), "
        "1.14.0 (KFP 2.0.2 on), or current (the project's own; default); an old one's venv is made "
        "on first use (docs/mlmd-versions.md)",
    )
    box.add_argument(
        "--run-store",
        metavar="URL",
        help="record every run into a KFP-shaped mlpipeline database at URL "
        "(mysql://root@127.0.0.1:3306/NAME or postgresql://...; DROPPED and created), "
        "delete finished Workflows and pods after --workflow-ttl as KFP does, and stop the "
        "controller for the second half of the runs: the demo shows the gap and the "
        "reconcile --from-kfp-db command that repairs it",
    )
    box.add_argument(
        "--argo-archive",
        metavar="URL",
        help="with --run-store: also archive completed Workflows as Argo's workflow archive does, in the "
        "database at URL (e.g. postgresql://postgres@127.0.0.1:5432/NAME; DROPPED and created)",
    )
    box.add_argument(
        "--workflow-ttl",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="with --run-store: seconds after a run finished that its Workflow and pods are deleted "
        "(KFP: 86400; default here 5)",
    )
    box.add_argument(
        "--run-store-layout",
        choices=("1.8", "2.5", "2.17"),
        default="1.8",
        help="with --run-store: the KFP release whose run_details columns to use (default 1.8)",
    )
    box.set_defaults(handler=run_command)


def run_command(args: argparse.Namespace) -> int:
    """Run the demo as the flags say; its exit code (1 when the last pass had errors)."""
    from controller.exits import EXIT_OK, EXIT_POD_ERRORS, UsageError
    from history.errors import HistoryError
    from sandbox.demo import RunStoreSetup, run_demo
    from sandbox.mlmd_legacy import LegacyServerError
    from sandbox.mlmd_venvs import MlmdVenvError
    from store.errors import StoreUnavailableError

    if args.runs < 1:
        raise UsageError("--runs must be at least 1")
    if args.mlmd and args.mlmd_version != "current":
        raise UsageError("--mlmd-version starts a server; --mlmd uses one that runs: give one of them")
    run_store = None
    if args.run_store:
        if args.runs < 2:
            raise UsageError("--run-store needs --runs 2 or more: half run while the writer is down")
        if not 1 <= args.workflow_ttl <= 3600:
            raise UsageError("--workflow-ttl must be from 1 to 3600 seconds in the sandbox")
        run_store = RunStoreSetup(args.run_store, args.argo_archive, args.workflow_ttl, args.run_store_layout)
    elif args.argo_archive:
        raise UsageError("--argo-archive needs --run-store")
    try:
        result = run_demo(
            args.runs,
            profile=args.argo,
            workdir=Path(args.workdir),
            pipelines_dir=args.pipelines,
            seed=args.seed,
            mlmd_url=args.mlmd,
            keep=args.keep,
            mlmd_version=args.mlmd_version,
            run_store=run_store,
        )
    except FileNotFoundError as exc:
        raise UsageError(str(exc)) from None
    except HistoryError as exc:  # the run store's database cannot be reached or read
        raise StoreUnavailableError(f"run store: {exc}") from None
    except (MlmdVenvError, LegacyServerError) as exc:  # exit 3: MLMD could not be started
        raise StoreUnavailableError(f"MLMD {args.mlmd_version}: {exc}") from None
    return EXIT_POD_ERRORS if result.errors else EXIT_OK
