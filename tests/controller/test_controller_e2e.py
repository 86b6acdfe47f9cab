"""The controller end to end: the sandbox cluster, the real kubernetes client, real MLMD over gRPC."""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from controller.health import HealthServer
from sandbox import pipelines
from sandbox.simulator import Simulator
from tests.controller.harness import Cluster, duplicate_counts, wait_until

WORKFLOWS = [
    "two_step",
    "chain10",
    "fan_out_fan_in",
    "exit_handler",
]


def metric_total(metrics: Any, name: str) -> float:
    """The sum of a metric's samples over all label values."""
    from prometheus_client.parser import text_string_to_metric_families

    return sum(
        sample.value
        for family in text_string_to_metric_families(metrics.render().decode())
        if family.name == name
        for sample in family.samples
        if sample.name == name + "_total" or sample.name == name
    )


def submit_all(sim: Simulator, names: list[str] = WORKFLOWS) -> None:
    for name in names:
        sim.submit(pipelines.load(name), "kubeflow")


def converged(cluster: Cluster) -> bool:
    try:
        actual = cluster.actual_snapshot()
    except KeyError:
        return False  # read between two of the controller's writes: look again
    return actual == cluster.expected_snapshot() and cluster.labels_correct()


def run_simulation(cluster: Cluster, sim: Simulator) -> None:
    sim.run(pace_s=0.02, background=True, stop_when_idle=True)
    wait_until(lambda: not sim.active, timeout=60, what="workflows to finish")


@pytest.mark.parametrize(
    ("profile", "pod_gc"),
    [
        ("3.1", None),
        ("3.3", None),
        ("3.5", None),
        ("3.6", None),
        ("3.5", "OnPodCompletion"),
        ("3.6", "OnPodSuccess"),
    ],
)
def test_runs_converge_while_controller_is_up(cluster: Cluster, profile: str, pod_gc: Any) -> None:
    # A long resync period: after the first pass only the watch can make it converge this fast.
    controller = cluster.controller(resync_interval_s=300.0)
    controller.start()
    controller.activate()
    try:
        sim = Simulator(cluster.api.store, profile, seed=7, pod_gc=pod_gc)
        submit_all(sim)
        run_simulation(cluster, sim)
        wait_until(lambda: converged(cluster), timeout=30, what="MLMD to equal one pass over the final state")
        assert duplicate_counts(cluster.mlmd.url) == {"executions": 0, "artifacts": 0, "events": 0}
    finally:
        controller.stop()


def test_watch_disabled_converges_within_one_period(cluster: Cluster) -> None:
    controller = cluster.controller(watch_enabled=False, resync_interval_s=3.0)
    controller.start()
    controller.activate()
    try:
        sim = Simulator(cluster.api.store, "3.5", seed=1)
        submit_all(sim)
        run_simulation(cluster, sim)
        wait_until(lambda: converged(cluster), timeout=3.0 + 5.0, what="convergence within one period")
        assert cluster.api.count("watch", "pods") == 0
    finally:
        controller.stop()


def test_cut_watches_and_compaction_throughout(cluster: Cluster) -> None:
    controller = cluster.controller(resync_interval_s=5.0)
    controller.start()
    controller.activate()
    stop = threading.Event()

    def chaos() -> None:
        while not stop.wait(0.2):
            cluster.api.cut_watches()
            cluster.api.compact()

    chaos_thread = threading.Thread(target=chaos, daemon=True)
    chaos_thread.start()
    try:
        sim = Simulator(cluster.api.store, "3.5", seed=2)
        submit_all(sim)
        run_simulation(cluster, sim)
        wait_until(lambda: converged(cluster), timeout=5.0 + 5.0, what="convergence within one period")
    finally:
        stop.set()
        chaos_thread.join()
        controller.stop()
    assert metric_total(controller.metrics, "kfp_metadata_reconciler_watch_restarts") >= 1


def test_api_errors_and_api_restart(cluster: Cluster) -> None:
    controller = cluster.controller(resync_interval_s=2.0)
    controller.start()
    controller.activate()
    try:
        sim = Simulator(cluster.api.store, "3.3", seed=3)
        submit_all(sim)
        cluster.api.fail_next(count=6, status=500, verb="list", resource="pods")
        cluster.api.fail_next(count=4, status=429, retry_after=1, verb="patch", resource="pods")
        cluster.api.fail_next(count=4, status=503, verb="list", resource="workflows")
        run_simulation(cluster, sim)
        cluster.api.restart(downtime=2.0)
        wait_until(lambda: converged(cluster), timeout=30, what="convergence after API faults")
        assert duplicate_counts(cluster.mlmd.url) == {"executions": 0, "artifacts": 0, "events": 0}
    finally:
        controller.stop()


def test_mlmd_down_for_a_minute(cluster: Cluster) -> None:
    controller = cluster.controller(resync_interval_s=2.0)
    health = HealthServer(
        "127.0.0.1",
        0,
        controller.metrics,
        lambda: controller.readiness.check(time.time(), controller.settings.resync_interval_s),
    )
    health.start()
    controller.start()
    controller.activate()

    def readyz() -> int:
        import urllib.error
        import urllib.request

        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{health.port}/readyz", timeout=5) as response:
                return response.status
        except urllib.error.HTTPError as err:
            return err.code

    try:
        wait_until(lambda: readyz() == 200, timeout=20, what="ready")
        cluster.mlmd.stop()
        sim = Simulator(cluster.api.store, "3.5", seed=4)
        submit_all(sim)
        run_simulation(cluster, sim)
        wait_until(lambda: readyz() == 503, timeout=20, what="not ready while MLMD is down")
        # The outage itself is the point: MLMD stays down for a minute, the process stays alive.
        down_until = time.monotonic() + 60
        while time.monotonic() < down_until:
            assert _healthz(health.port) == 200
            time.sleep(5)
        cluster.mlmd.start()
        wait_until(lambda: converged(cluster), timeout=40, what="convergence after MLMD returns")
        wait_until(lambda: readyz() == 200, timeout=20, what="ready again")
        assert duplicate_counts(cluster.mlmd.url) == {"executions": 0, "artifacts": 0, "events": 0}
    finally:
        controller.stop()
        health.stop()


def _healthz(port: int) -> int:
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as response:
        return response.status


@pytest.mark.parametrize("election", [True, False])
def test_two_replicas_make_no_duplicates(cluster: Cluster, election: bool) -> None:
    from controller.kube import api_client_from
    from controller.leader import LeaderElector

    replicas = [cluster.controller(resync_interval_s=1.0) for _ in range(2)]
    electors = []
    for i, replica in enumerate(replicas):
        replica.start()
        if election:
            elector = LeaderElector(
                api_client_from(str(cluster.kubeconfig)),
                namespace="kubeflow",
                name="kfpmr",
                identity=f"r{i}",
                lease_duration_s=3,
                renew_deadline_s=2,
                retry_period_s=0.2,
                on_started=replica.activate,
                on_stopped=replica.deactivate,
            )
            elector.start()
            electors.append(elector)
        else:
            replica.activate()
    try:
        sim = Simulator(cluster.api.store, "3.5", seed=5)
        submit_all(sim)
        run_simulation(cluster, sim)
        wait_until(lambda: converged(cluster), timeout=30, what="convergence with two replicas")
        assert duplicate_counts(cluster.mlmd.url) == {"executions": 0, "artifacts": 0, "events": 0}
        if election:
            assert sum(r.active.is_set() for r in replicas) == 1
    finally:
        for elector in electors:
            elector.stop(release=True)
        for replica in replicas:
            replica.stop()


def test_malformed_pod_gets_an_event_and_the_rest_converge(cluster: Cluster) -> None:
    sim = Simulator(cluster.api.store, "3.3", seed=6)
    submit_all(sim, WORKFLOWS[:2])
    sim.run_until_complete()
    victim = cluster.api.store.list("pods")[0]
    name = victim["metadata"]["name"]
    cluster.api.store.patch(
        "pods",
        "kubeflow",
        name,
        {"metadata": {"annotations": {"pipelines.kubeflow.org/component_spec": "{bad"}}},
    )
    controller = cluster.controller(resync_interval_s=1.0)
    controller.start()
    controller.activate()
    try:
        wait_until(
            lambda: any(e["involvedObject"]["name"] == name for e in cluster.api.store.list("events")),
            timeout=20,
            what="an Event on the bad pod",
        )
        events = [e for e in cluster.api.store.list("events") if e["involvedObject"]["name"] == name]
        assert events[0]["reason"] == "MetadataReconcileFailed"
        assert "component_spec" in events[0]["message"]
        wait_until(lambda: b'reason="malformed_annotation"' in controller.metrics.render(), timeout=10)
        store_pods = [p for p in cluster.api.store.list("pods") if p["metadata"]["name"] != name]
        wait_until(
            lambda: all(
                "pipelines.kubeflow.org/metadata_execution_id" in p["metadata"]["labels"]
                for p in [
                    cluster.api.store.get("pods", "kubeflow", q["metadata"]["name"]) for q in store_pods
                ]
            ),
            timeout=20,
            what="the other pods labelled",
        )
        # Passes later there is still one Event (rate-limited), not one per pass.
        controller.run_pass("resync")
        controller.run_pass("resync")
        events = [e for e in cluster.api.store.list("events") if e["involvedObject"]["name"] == name]
        assert len(events) == 1
    finally:
        controller.stop()


def test_idle_pass_writes_nothing(cluster: Cluster) -> None:
    sim = Simulator(cluster.api.store, "3.5", seed=8)
    submit_all(sim)
    sim.run_until_complete()
    controller = cluster.controller(resync_interval_s=300.0, watch_enabled=False)
    controller.start()
    controller.activate()
    try:
        wait_until(lambda: converged(cluster), timeout=30, what="first convergence")
        cluster.api.reset_counts()
        cluster.mlmd.reset_counts()
        report = controller.run_pass("resync")
        assert report is not None and sum(report.actions.values()) == 0
        counts = cluster.api.request_counts()
        assert counts.get(("patch", "pods"), 0) == 0
        assert counts.get(("create", "events"), 0) == 0
        assert cluster.mlmd.write_calls() == 0
        assert counts.get(("list", "pods"), 0) >= 1  # it did look
    finally:
        controller.stop()


def test_sigkill_during_busy_passes(cluster: Cluster, tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys

    from sandbox.simulator import generate_load

    generate_load(cluster.api.store, workflows=40, steps=5, profile="3.5", seed=9, completed=False)
    # Keep the cluster busy: new runs keep arriving while the controller is killed again and again.
    sim = Simulator(cluster.api.store, "3.5", seed=10)
    arrivals = threading.Event()

    def keep_busy() -> None:
        names = ["chain10", "two_step", "fan_out_fan_in"]
        i = 0
        while not arrivals.wait(0.4):
            sim.submit(pipelines.load(names[i % len(names)]), "kubeflow")
            i += 1
            for _ in range(3):
                sim.step()

    busy_thread = threading.Thread(target=keep_busy, daemon=True)
    busy_thread.start()
    env = {
        **os.environ,
        "KFPMR_KUBECONFIG": str(cluster.kubeconfig),
        "KFPMR_MLMD_URL": cluster.mlmd.url,
        "KFPMR_LEADER_ELECTION": "false",
        "KFPMR_RESYNC_INTERVAL_S": "1",
        "KFPMR_RESYNC_JITTER_S": "0",
        "KFPMR_HEALTH_PORT": "0",
        "KFPMR_LOG_JSON": "true",
    }
    rng = random.Random(11)
    kills = busy = 0
    for i in range(20):
        before = cluster.mlmd.write_calls()
        proc = subprocess.Popen(
            [sys.executable, "-m", "controller.cli", "run"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        if i % 2:
            # In the middle of its writes: once this process has committed one, at a random
            # moment soon after (start-up time varies too much on a busy machine to guess).
            wait_until(
                lambda before=before: cluster.mlmd.write_calls() > before,
                timeout=60,
                what="the controller to write",
            )
            time.sleep(rng.uniform(0.0, 0.3))
        else:
            time.sleep(rng.uniform(0.5, 2.5))  # a random moment: start-up, or a pass
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        kills += 1
        busy += cluster.mlmd.write_calls() > before
    arrivals.set()
    busy_thread.join()
    sim.run_until_complete()
    assert kills == 20
    assert busy >= 10, f"only {busy} of the kills hit a process that was writing MLMD"
    ready = tmp_path / "ready"
    final = subprocess.Popen(
        [sys.executable, "-m", "controller.cli", "run", "--ready-file", str(ready)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until(ready.exists, timeout=30, what="the last controller to serve")
        wait_until(lambda: converged(cluster), timeout=60, what="convergence after 20 SIGKILLs")
    finally:
        final.send_signal(signal.SIGTERM)
        _, err = final.communicate(timeout=30)
    assert final.returncode == 0, err[-2000:]
    assert duplicate_counts(cluster.mlmd.url) == {"executions": 0, "artifacts": 0, "events": 0}


def test_sigterm_releases_the_lease_to_the_standby(cluster: Cluster, tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys

    env = {
        **os.environ,
        "KFPMR_KUBECONFIG": str(cluster.kubeconfig),
        "KFPMR_MLMD_URL": cluster.mlmd.url,
        "KFPMR_HEALTH_PORT": "0",
        "KFPMR_LEASE_NAMESPACE": "kubeflow",
        "KFPMR_LEASE_DURATION_S": "30",
        "KFPMR_RENEW_DEADLINE_S": "20",
        "KFPMR_RETRY_PERIOD_S": "0.2",
    }

    def holder() -> str | None:
        try:
            lease = cluster.api.store.get("leases", "kubeflow", "kfp-metadata-reconciler")
        except Exception:
            return None
        return lease.get("spec", {}).get("holderIdentity") or None

    procs = {}
    for name in ("a", "b"):
        procs[name] = subprocess.Popen(
            [sys.executable, "-m", "controller.cli", "run", "--ready-file", str(tmp_path / name)],
            env={**env, "KFPMR_IDENTITY": name},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
    try:
        leader = wait_until(holder, timeout=30, what="a leader")
        standby = "b" if leader == "a" else "a"
        wait_until((tmp_path / leader).exists, timeout=30, what="the leader to serve")
        procs[leader].send_signal(signal.SIGTERM)
        _, err = procs[leader].communicate(timeout=30)
        assert procs[leader].returncode == 0, err[-2000:]
        started = time.monotonic()
        wait_until(lambda: holder() == standby, timeout=10, what="the standby to take the released lease")
        assert time.monotonic() - started < 10  # far sooner than the 30 s lease would expire
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.communicate(timeout=30)


@pytest.mark.parametrize("pod_gc", [None, "OnPodSuccess"])
def test_a_full_pass_in_small_chunks_converges_in_one_pass(cluster: Cluster, pod_gc: Any) -> None:
    # Chunks of 3 pods: most chunks hold one workflow, chain10 is bigger than a chunk,
    # and with pod GC the steps whose pods are gone come from their Workflows after the
    # last chunk.
    sim = Simulator(cluster.api.store, "3.5", seed=9, pod_gc=pod_gc)
    submit_all(sim)
    for _ in range(3):
        sim.submit(pipelines.load("two_step"), "team-a")
    sim.run_until_complete()
    pods = cluster.api.store.list("pods")
    controller = cluster.controller(chunk_pods=3, watch_enabled=False)
    controller.activate()
    try:
        report = controller.run_pass("resync")
        assert report is not None and report.errors == []
        assert report.pending_inputs == 0 and report.pending_outputs == 0
        assert report.pods_seen == len(pods) and report.patch_count == len(pods)
        assert converged(cluster)
        again = controller.run_pass("resync")
        assert again is not None and sum(again.actions.values()) == 0 and again.patch_count == 0
        assert duplicate_counts(cluster.mlmd.url) == {"executions": 0, "artifacts": 0, "events": 0}
    finally:
        controller.stop()


@pytest.mark.parametrize("version", ["current", "1.5.0"])
def test_the_mlmd_capabilities_are_logged_and_exposed_when_the_store_opens(
    version: str,
    cluster: Cluster,
    mlmd_server_factory: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """One log line and a gauge per capability at the first pass, and again after a reopen."""
    from prometheus_client.parser import text_string_to_metric_families

    if version != "current":
        cluster.mlmd.stop()
        cluster.mlmd = mlmd_server_factory(version).server
        cluster.context_keys = False  # 1.5.0 keeps no external_id: run contexts go by name
    sim = Simulator(cluster.api.store, "3.5", seed=9)
    submit_all(sim, ["two_step"])
    sim.run_until_complete()
    controller = cluster.controller(watch_enabled=False)
    controller.activate()
    caplog.set_level("INFO", logger="controller.loop")
    try:
        for _ in range(2):
            report = controller.run_pass("resync")
            assert report is not None and report.errors == []
        lines = [r for r in caplog.records if r.getMessage().startswith("MLMD capabilities: ")]
        assert len(lines) == 1  # once per open, not per pass
        keyed = version == "current"
        assert (
            lines[0]
            .getMessage()
            .endswith(
                "(keys in external_id, writes by put_lineage_subgraph)"
                if keyed
                else "(keys in name, one put_execution per step)"
            )
        )
        assert lines[0].mlmd_capabilities["key_placement"] == ("external_id" if keyed else "name")
        gauges = {
            s.labels["capability"]: s.value
            for family in text_string_to_metric_families(controller.metrics.render().decode())
            if family.name == "kfp_metadata_reconciler_mlmd_capability"
            for s in family.samples
        }
        assert gauges == {"external_id": keyed, "put_lineage_subgraph": keyed, "filter_query": 1.0}
        controller._drop_store()  # as after an MLMD error: the next pass opens and probes again
        assert controller.run_pass("resync") is not None
        assert len([r for r in caplog.records if r.getMessage().startswith("MLMD capabilities: ")]) == 2
        assert converged(cluster)
    finally:
        controller.stop()
