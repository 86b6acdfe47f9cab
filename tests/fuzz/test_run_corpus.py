"""Every crasher of issue 11 in a cluster, under `run`, against the project's MLMD gRPC server.

The corpus (tests/fuzz/corpus.py) goes into the API emulator as pods; `kfp-metadata-reconciler
run` and `python -m store.server` run as child processes. Each bad pod gets its
`MetadataReconcileFailed` Event naming the reason, every other pod converges (recorded once,
labelled), later passes write nothing, the MLMD server stays up and /readyz stays 200.

Three cases cannot be in a cluster: a lone surrogate in a pod's name, namespace or workflow
label cannot be encoded as the JSON an API server stores (a real one never receives it: Go
decodes it to U+FFFD), and the emulator refuses them the same way. They are dump-only, and
tests/fuzz/test_corpus.py runs them through `--from-file`.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from sandbox.apiserver import ApiServer
from sandbox.cluster import ClusterError
from store.connect import open_store
from tests.controller.harness import wait_until
from tests.fuzz.child import REPO, grpc_server
from tests.fuzz.corpus import Case
from tests.fuzz.test_corpus import corpus_dump

CLI = [sys.executable, "-m", "controller.cli"]
EXECUTION_ID = "pipelines.kubeflow.org/metadata_execution_id"


def readyz(port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def metric_sums(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        text = answer.read().decode()
    sums: Counter[str] = Counter()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            sums[sample.name] += sample.value
    return dict(sums)


def load_pods(api: ApiServer, dump: Path) -> list[str]:
    """Create the dump's pods in the emulator; the names of those it refuses (see the docstring)."""
    refused = []
    for pod in json.loads(dump.read_text(encoding="ascii"))["items"]:
        try:
            api.store.create("pods", pod)
        except (ClusterError, UnicodeEncodeError):
            refused.append(pod["metadata"]["name"])
    return refused


def test_every_crasher_under_run_gets_its_event_and_everything_else_converges(tmp_path: Path) -> None:
    dump, victims, clean = corpus_dump(tmp_path / "corpus.json", dump_only=False)
    with ApiServer() as api, grpc_server(f"sqlite:///{tmp_path}/mlmd.sqlite") as mlmd:
        refused = load_pods(api, dump)
        assert sorted(victims[name].name for name in refused) == [
            "surrogate_namespace",
            "surrogate_pod_name",
            "surrogate_workflow_label",
        ]
        in_cluster = {name: case for name, case in victims.items() if name not in refused}
        kubeconfig = api.write_kubeconfig(tmp_path / "kubeconfig")
        ready = tmp_path / "port"
        process = subprocess.Popen(
            [
                *CLI,
                "run",
                "--kubeconfig",
                str(kubeconfig),
                "--mlmd",
                mlmd.url,
                "--health-port",
                "0",
                "--leader-elect=false",
                "--ready-file",
                str(ready),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO,
            env={
                "PATH": "/usr/bin:/bin",
                "KFPMR_LOG_JSON": "true",
                "KFPMR_RESYNC_INTERVAL_S": "2",
                "KFPMR_RESYNC_JITTER_S": "0",
            },
        )
        try:
            port = int(
                wait_until(lambda: ready.exists() and ready.read_text(), timeout=60, what="ready file")
            )
            wait_until(lambda: readyz(port) == 200, timeout=60, what="/readyz 200")
            store = open_store(mlmd.url)
            not_ready: list[int] = []

            def executions() -> Counter[str]:
                return Counter(
                    e.custom_properties["kfp_pod_name"].string_value for e in store.get_executions()
                )

            def events() -> dict[str, list[dict[str, Any]]]:
                found: dict[str, list[dict[str, Any]]] = {}
                for event in api.store.list("events"):
                    found.setdefault(event["involvedObject"]["name"], []).append(event)
                return found

            def labelled(name: str) -> bool:
                return EXECUTION_ID in (
                    api.store.get("pods", "kubeflow", name)["metadata"].get("labels") or {}
                )

            def converged() -> bool:
                status = readyz(port)
                if status != 200:
                    not_ready.append(status)
                counts, seen = executions(), events()
                recorded = [n for n, c in in_cluster.items() if c.expect != "error"] + clean
                bad = [n for n, c in in_cluster.items() if c.expect == "error"]
                return all(counts[n] == 1 and labelled(n) for n in recorded) and all(n in seen for n in bad)

            wait_until(converged, timeout=180, what="every clean pod recorded and every bad pod's Event")
            assert not_ready == [], "/readyz left 200"
            wrong = check_events(events(), executions(), in_cluster)
            assert wrong == []
            # Later passes write nothing: the store is converged although the bad pods stay bad.
            before = metric_sums(port)
            wait_until(
                lambda: (
                    metric_sums(port)["kfp_metadata_reconciler_passes_total"]
                    >= before["kfp_metadata_reconciler_passes_total"] + 2
                ),
                timeout=60,
                what="two more passes",
            )
            after = metric_sums(port)
            assert (
                after["kfp_metadata_reconciler_actions_total"]
                == before["kfp_metadata_reconciler_actions_total"]
            )
            assert readyz(port) == 200
            assert mlmd.alive(), "the MLMD gRPC server died"
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
            _, stderr = process.communicate(timeout=60)
        assert process.returncode == 0, stderr[-3000:]
        assert "Traceback" not in stderr
        logs = [json.loads(line) for line in stderr.splitlines() if line.strip()]
        failed = [line for line in logs if line["msg"] == "pass failed"]
        assert failed == [], failed


def check_events(
    events: dict[str, list[dict[str, Any]]], executions: Counter[str], victims: dict[str, Case]
) -> list[str]:
    """Every way the Events and records differ from what the corpus says (empty: as documented)."""
    wrong = []
    for name, case in victims.items():
        mine = events.get(name, [])
        if case.expect != "error":
            if mine or executions[name] != 1:
                wrong.append(
                    f"{case.name}: expected one execution and no Event, got {executions[name]}, {mine}"
                )
            continue
        if executions[name]:
            wrong.append(f"{case.name}: recorded although it is bad")
        if len(mine) != 1 or mine[0]["reason"] != "MetadataReconcileFailed":
            wrong.append(f"{case.name}: expected one MetadataReconcileFailed Event, got {mine}")
        elif case.reason and not mine[0]["message"].startswith(f"{case.reason}: "):
            wrong.append(f"{case.name}: expected {case.reason}, got {mine[0]['message']!r}")
        elif case.fragment not in mine[0]["message"]:
            wrong.append(f"{case.name}: no {case.fragment!r} in {mine[0]['message']!r}")
    return wrong
