"""python -m bench <scenario> [--quick] [--out FILE] [--mlmd sqlite|mysql] [--mlmd-version V] [--workflows N]

Scenarios: backfill, idle-resync, latency, recovery, scale, dump, all (and
emulator-list, the emulator's own list benchmark; fuzz, hostile pods through the CLI:
`python -m bench fuzz --pods 5000`). Each prints one JSON
report on stdout and writes it to bench/reports/<scenario>.json (or --out;
with `all`, --out is a directory).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench import scenarios as s
from bench.common import REPORTS, Report, write_report

SCENARIOS = ("backfill", "idle-resync", "latency", "recovery", "scale", "dump", "stored-runs")


def run(
    name: str,
    quick: bool,
    workdir: Path,
    mlmd: str = "sqlite",
    plot: Path | None = None,
    pods: int = 5000,
    mlmd_version: str = "current",
    workflows: int | None = None,
    keep_failed: Path | None = None,
) -> Report:
    """Run one scenario at its full (or quick) size; `workflows` overrides the size (backfill,
    idle-resync), `mlmd_version` runs them against that MLMD release's server."""
    sizes = s.QUICK if quick else s.FULL
    if workflows is not None:
        sizes = s.Sizes(workflows)
    if name == "backfill":
        return s.backfill(workdir, sizes, mlmd, mlmd_version)
    if name == "idle-resync":
        return s.idle_resync(workdir, sizes, mlmd_version=mlmd_version)
    if name == "recovery":
        return s.recovery(workdir, sizes)
    if name == "latency":
        if quick:
            return s.latency(workdir, workflows=4, steps=5, every_s=0.4)
        return s.latency(workdir, workflows=100, steps=5, every_s=0.5)
    if name == "fuzz":
        from bench.fuzz import fuzz

        return fuzz(100 if quick else pods, keep_failed=keep_failed)
    if name == "stored-runs":
        from bench.stored_runs import stored_runs

        return stored_runs(workdir, 20 if quick else (workflows or 10_000))
    if name == "dump":
        from bench.dump import dump_scenario

        if workflows is not None:
            return dump_scenario(workdir, [workflows])
        return dump_scenario(workdir, [10] if quick else [2_000, 10_000])
    if name == "scale":
        counts = [50, 200] if quick else [1_000, 10_000, 50_000]
        return s.scale(workdir, counts, plot=plot)
    raise ValueError(f"unknown scenario {name!r}")


def _emulator_list(argv: list[str]) -> int:
    from bench import emulator_list

    sys.argv = ["bench/emulator_list.py", *argv]
    emulator_list.main()
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["emulator-list"]:
        return _emulator_list(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("scenario", choices=[*SCENARIOS, "all", "fuzz"])
    parser.add_argument("--pods", type=int, default=5000, help="fuzz: mutated pods to run (default 5000)")
    parser.add_argument(
        "--keep-failed", type=Path, default=None, help="fuzz: copy each failed batch (dump, MLMD file) here"
    )
    parser.add_argument("--quick", action="store_true", help="small sizes (what the test suite runs)")
    parser.add_argument("--out", type=Path, help="report file (a directory with `all`)")
    parser.add_argument(
        "--mlmd",
        choices=["sqlite", "mysql"],
        default="sqlite",
        help="MLMD for backfill: embedded SQLite, or MariaDB at 127.0.0.1:3306",
    )
    parser.add_argument(
        "--mlmd-version",
        choices=["1.0.0", "1.5.0", "1.14.0", "current"],
        default="current",
        help="backfill, idle-resync: that MLMD release's gRPC server over SQLite "
        "(default: the embedded library)",
    )
    parser.add_argument(
        "--workflows",
        type=int,
        default=None,
        help="backfill, idle-resync, dump: completed 5-step workflows to load (dump: one size); "
        "stored-runs: runs (10,000)",
    )
    parser.add_argument(
        "--plot", type=Path, default=None, help="scale: PNG of the curve (default bench/reports/scale.png)"
    )
    parser.add_argument("--log-level", default="WARNING")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, stream=sys.stderr)

    names = list(SCENARIOS) if args.scenario == "all" else [args.scenario]
    docs: list[dict[str, Any]] = []
    for name in names:
        with tempfile.TemporaryDirectory(prefix=f"bench-{name}-") as tmp:
            plot = args.plot or (None if args.quick else REPORTS / "scale.png")
            report = run(
                name,
                args.quick,
                Path(tmp),
                args.mlmd,
                plot,
                args.pods,
                args.mlmd_version,
                args.workflows,
                args.keep_failed,
            )
        doc = report.to_json()
        doc["parameters"]["quick"] = args.quick
        suffix = "-mysql" if name == "backfill" and args.mlmd == "mysql" else ""
        if name in ("backfill", "idle-resync") and args.mlmd_version != "current":
            suffix += f"-mlmd-{args.mlmd_version}"
        if args.out is None:
            out = REPORTS / f"{name}{suffix}.json"
        elif args.scenario == "all":
            out = args.out / f"{name}{suffix}.json"
        else:
            out = args.out
        write_report(doc, out)
        docs.append(doc)
        if args.scenario == "all":
            print(json.dumps(doc), flush=True)
    if args.scenario != "all":
        print(json.dumps(docs[0], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
