"""The `sandbox` command of `kfp-metadata-reconciler`, added by the sandbox distribution.

sandbox/pyproject.toml names `add_command` in the entry point group the command line
reads (controller/cli.py, COMMANDS_GROUP): with the sandbox installed the product's CLI
has the command, and the product itself never imports the sandbox.
"""

from __future__ import annotations

import argparse
from pathlib import Path


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
    box.set_defaults(handler=run_command)


def run_command(args: argparse.Namespace) -> int:
    """Run the demo as the flags say; its exit code (1 when the last pass had errors)."""
    from controller.exits import EXIT_OK, EXIT_POD_ERRORS, UsageError
    from sandbox.demo import run_demo

    if args.runs < 1:
        raise UsageError("--runs must be at least 1")
    try:
        result = run_demo(
            args.runs,
            profile=args.argo,
            workdir=Path(args.workdir),
            pipelines_dir=args.pipelines,
            seed=args.seed,
            mlmd_url=args.mlmd,
            keep=args.keep,
        )
    except FileNotFoundError as exc:
        raise UsageError(str(exc)) from None
    return EXIT_POD_ERRORS if result.errors else EXIT_OK
