"""Full passes in a process of their own, for a clean peak-RSS figure (used by `scale`).

    python -m bench.worker --kubeconfig K --mlmd URL [--passes N]

prints one JSON object about the first pass: pods, wall_s, cpu_s, mlmd_reads,
mlmd_writes, patches; peak_rss_mb (VmHWM of this process, over all passes),
baseline_rss_mb (before the first pass, after imports); and with N > 1,
later_wall_s and later_mlmd_reads: the wall time and MLMD reads of each later pass
(the first pass of a process compares every step; later ones skip the steps it
found converged).
"""

from __future__ import annotations

import argparse
import json
import logging
import time

from bench.common import CountingStore, cpu_s, peak_rss_mb
from controller.health import Readiness
from controller.kube import KubeClient, api_client_from
from controller.loop import Controller
from controller.metrics import Metrics
from controller.settings import Settings
from store.connect import open_store


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--mlmd", required=True)
    parser.add_argument("--passes", type=int, default=1)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    settings = Settings(kubeconfig=args.kubeconfig, mlmd_url=args.mlmd, leader_election=False, health_port=0)
    store = CountingStore(open_store(args.mlmd))
    kube = KubeClient(api_client_from(args.kubeconfig))
    controller = Controller(settings, kube, Metrics(), Readiness(), store_opener=lambda: store)
    controller.active.set()
    baseline = peak_rss_mb()
    wall0, cpu0 = time.perf_counter(), cpu_s()
    report = controller.run_pass("resync")
    wall, cpu = time.perf_counter() - wall0, cpu_s() - cpu0
    if report is None:
        raise SystemExit("the pass failed")
    first_reads, first_writes = store.reads, store.writes
    later_wall, later_reads = [], []
    for _ in range(args.passes - 1):
        store.reset()
        wall0 = time.perf_counter()
        if controller.run_pass("resync") is None:
            raise SystemExit("the pass failed")
        later_wall.append(round(time.perf_counter() - wall0, 3))
        later_reads.append(store.reads)
    print(
        json.dumps(
            {
                "pods": report.pods_seen,
                "wall_s": round(wall, 3),
                "cpu_s": round(cpu, 3),
                "peak_rss_mb": round(peak_rss_mb(), 1),
                "baseline_rss_mb": round(baseline, 1),
                "mlmd_reads": first_reads,
                "mlmd_writes": first_writes,
                "patches": report.patch_count,
                "errors": len(report.errors),
                "later_wall_s": later_wall,
                "later_mlmd_reads": later_reads,
            }
        )
    )


if __name__ == "__main__":
    main()
