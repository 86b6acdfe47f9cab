"""The emulator through ``kubectl`` (a second real client). kubectl must be on PATH."""

from __future__ import annotations

import json
import queue
import shutil
import subprocess
import threading
from pathlib import Path

import yaml

from sandbox.apiserver import ApiServer

from .conftest import KubectlRunner, pod


def _seed(api: ApiServer) -> None:
    api.store.create("pods", pod("p0", "kubeflow", {"app": "a"}))
    api.store.create("pods", pod("p1", "kubeflow", {"app": "a", "tier": "web"}))
    api.store.create("pods", pod("p2", "kubeflow", {"app": "b"}))


def test_get_pods_label_selector_json(api: ApiServer, kubectl: KubectlRunner) -> None:
    _seed(api)
    out = kubectl("get", "pods", "-n", "kubeflow", "-l", "app=a,!tier", "-o", "json")
    doc = json.loads(out.stdout)
    assert [p["metadata"]["name"] for p in doc["items"]] == ["p0"]
    out = kubectl("get", "pods", "-A", "-l", "app in (a,b)", "-o", "json")
    assert [p["metadata"]["name"] for p in json.loads(out.stdout)["items"]] == ["p0", "p1", "p2"]
    table = kubectl("get", "po", "-n", "kubeflow").stdout.splitlines()
    assert table[0].split() == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    assert [line.split()[0] for line in table[1:]] == ["p0", "p1", "p2"]
    missing = kubectl("get", "pod", "nope", "-n", "kubeflow", check=False)
    assert missing.returncode != 0 and 'pods "nope" not found' in missing.stderr


def test_label_pod(api: ApiServer, kubectl: KubectlRunner) -> None:
    _seed(api)
    kubectl("label", "pod", "p0", "-n", "kubeflow", "pipelines.kubeflow.org/metadata_written=true")
    labels = api.store.get("pods", "kubeflow", "p0")["metadata"]["labels"]
    assert labels == {"app": "a", "pipelines.kubeflow.org/metadata_written": "true"}
    kubectl("label", "pod", "p0", "-n", "kubeflow", "app-")
    assert "app" not in api.store.get("pods", "kubeflow", "p0")["metadata"]["labels"]
    refused = kubectl("label", "pod", "p1", "-n", "kubeflow", "app=z", check=False)
    assert refused.returncode != 0  # needs --overwrite, like a real cluster


def test_annotate_pod(api: ApiServer, kubectl: KubectlRunner) -> None:
    _seed(api)
    kubectl("annotate", "pod", "p1", "-n", "kubeflow",
            'pipelines.kubeflow.org/metadata_output_artifact_ids=[1,2]')
    ann = api.store.get("pods", "kubeflow", "p1")["metadata"]["annotations"]
    assert ann == {"pipelines.kubeflow.org/metadata_output_artifact_ids": "[1,2]"}


def test_patch_pod_merge(api: ApiServer, kubectl: KubectlRunner) -> None:
    _seed(api)
    api.reset_counts()
    kubectl("patch", "pod", "p2", "-n", "kubeflow", "--type", "merge", "-p",
            '{"metadata":{"labels":{"app":null,"x":"1"}}}')
    assert api.store.get("pods", "kubeflow", "p2")["metadata"]["labels"] == {"x": "1"}
    assert api.count("patch", "pods") == 1
    kubectl("patch", "pod", "p2", "-n", "kubeflow", "--type", "json", "-p",
            '[{"op":"add","path":"/metadata/labels/y","value":"2"}]')
    assert api.store.get("pods", "kubeflow", "p2")["metadata"]["labels"] == {"x": "1", "y": "2"}


def test_get_pods_watch(api: ApiServer, kubeconfig: Path, tmp_path: Path) -> None:
    _seed(api)
    binary = shutil.which("kubectl")
    assert binary, "kubectl is not on PATH"
    proc = subprocess.Popen(
        [binary, "--kubeconfig", str(kubeconfig), "--cache-dir", str(tmp_path / "kcache"),
         "get", "pods", "-n", "kubeflow", "-l", "app=a",
         "--watch", "--request-timeout=30s"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line.rstrip("\n"))

    threading.Thread(target=pump, daemon=True).start()
    try:
        first = [lines.get(timeout=20) for _ in range(3)]
        assert first[0].split()[0] == "NAME"
        assert [line.split()[0] for line in first[1:]] == ["p0", "p1"]
        assert api.wait_for_watches(1, timeout=20)
        api.store.patch("pods", "kubeflow", "p1", {"status": {"phase": "Succeeded"}})
        api.store.create("pods", pod("p3", "kubeflow", {"app": "a"}))
        update, added = lines.get(timeout=20).split(), lines.get(timeout=20).split()
        assert update[0] == "p1" and update[2] == "Succeeded"
        assert added[0] == "p3"
    finally:
        proc.terminate()
        proc.wait(10)


def test_get_workflows(api: ApiServer, kubectl: KubectlRunner) -> None:
    api.store.create("workflows", {"metadata": {"name": "demo-x7k2p", "namespace": "kubeflow"},
                                   "spec": {}, "status": {"phase": "Running"}})
    out = kubectl("get", "workflows.argoproj.io", "-n", "kubeflow").stdout.splitlines()
    assert out[0].split() == ["NAME", "STATUS", "AGE"]
    assert out[1].split()[:2] == ["demo-x7k2p", "Running"]
    names = kubectl("get", "wf", "-A", "-o", "name").stdout.split()
    assert names == ["workflow.argoproj.io/demo-x7k2p"]
    doc = json.loads(kubectl("get", "workflow", "demo-x7k2p", "-n", "kubeflow", "-o",
                             "json").stdout)
    assert doc["kind"] == "Workflow" and doc["status"]["phase"] == "Running"


def test_every_output_form_negotiates(api: ApiServer, kubectl: KubectlRunner) -> None:
    """kubectl asks for a Table (as=Table;v=v1, then v1beta1, then plain JSON) when it prints
    columns and for plain JSON otherwise; each form is served and counted under its view."""
    _seed(api)
    api.reset_counts()
    names = kubectl("get", "pods", "-n", "kubeflow", "-o", "name").stdout.split()
    assert names == ["pod/p0", "pod/p1", "pod/p2"]
    listed = yaml.safe_load(kubectl("get", "pods", "-n", "kubeflow", "-o", "yaml").stdout)
    assert [p["metadata"]["name"] for p in listed["items"]] == ["p0", "p1", "p2"]
    cols = kubectl("get", "pods", "-n", "kubeflow", "-o", "custom-columns=N:.metadata.name,P:.status.phase")
    assert cols.stdout.split() == ["N", "P", "p0", "Running", "p1", "Running", "p2", "Running"]
    wide = kubectl("get", "pods", "-n", "kubeflow", "-o", "wide").stdout.splitlines()
    assert wide[0].split() == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    chunked = kubectl("get", "pods", "-n", "kubeflow", "--chunk-size=1").stdout.splitlines()
    assert [line.split()[0] for line in chunked] == ["NAME", "p0", "p1", "p2"]
    raw = json.loads(kubectl("get", "--raw", "/api/v1/namespaces/kubeflow/pods?limit=2").stdout)
    assert raw["kind"] == "PodList" and raw["metadata"]["continue"] and len(raw["items"]) == 2
    traffic = json.loads(kubectl("get", "--raw", "/_sandbox/traffic").stdout)["traffic"]
    requests = {(r["verb"], r["resource"], r["view"]): r["requests"] for r in traffic}
    # name, yaml, custom-columns, --raw: plain JSON; wide and the three one-pod pages: Tables
    assert requests == {("list", "pods", "full"): 4, ("list", "pods", "table"): 4}
    assert all(r["bytes"] > 0 for r in traffic)
