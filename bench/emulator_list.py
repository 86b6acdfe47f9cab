"""Benchmark: paginated list of KFP-shaped pods from the API emulator.

Builds N (default 10,000) pods of ~4 KB each, shaped like an Argo 3.5 / KFP v1
step pod (labels, annotations, ARGO_TEMPLATE env, container statuses), stores
them in an :class:`sandbox.apiserver.ApiServer`, then lists them through the
official ``kubernetes`` client in pages (``limit=500``) with
``_preload_content=False`` + ``json.loads``, and prints one JSON object::

    {"scenario": "emulator-list", "pods": 10000, "wall_s": ..., "pods_per_s": ..., "pages": ...}

Run: ``python bench/emulator_list.py [--pods N] [--limit 500]``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from kubernetes import client, config

from sandbox.apiserver import ApiServer


def _cstatus(name: str, image: str) -> dict[str, Any]:
    """A terminated container status with every field the typed client requires."""
    return {
        "name": name,
        "image": image,
        "imageID": f"docker.io/{image}@sha256:{'0' * 64}",
        "ready": False,
        "restartCount": 0,
        "started": False,
        "state": {
            "terminated": {
                "exitCode": 0,
                "reason": "Completed",
                "startedAt": "2024-05-01T10:00:20Z",
                "finishedAt": "2024-05-01T10:00:41Z",
            }
        },
    }


def kfp_pod(wf: str, step: int, namespace: str = "kubeflow") -> dict[str, Any]:
    """A synthetic ~4 KB KFP v1 step pod (Argo 3.5 anatomy, outputs in a task result)."""
    node_id = f"{wf}-{1000000000 + step * 7919}"
    tmpl_name = f"step-{step % 7}"
    pod_name = f"{wf}-{tmpl_name}-{1000000000 + step * 7919}"
    template = {
        "name": tmpl_name,
        "inputs": {
            "parameters": [{"name": "n", "value": str(step)}],
            "artifacts": [
                {
                    "name": "produce-out",
                    "path": "/tmp/inputs/dataset/data",
                    "s3": {"key": f"artifacts/{wf}/2024/05/01/{wf}-produce/out.tgz"},
                }
            ],
        },
        "outputs": {
            "artifacts": [
                {"name": f"{tmpl_name}-model", "path": "/tmp/outputs/model/data"},
                {
                    "name": "mlpipeline-ui-metadata",
                    "path": "/tmp/outputs/mlpipeline-ui-metadata/data",
                    "optional": True,
                },
            ]
        },
        "metadata": {"labels": {"pipelines.kubeflow.org/kfp_sdk_version": "1.8.22"}},
        "container": {
            "image": "python:3.9",
            "command": ["sh", "-ec", "python3 -u main.py"],
            "args": ["--n", str(step), "--model", "/tmp/outputs/model/data"],
        },
        "archiveLocation": {
            "archiveLogs": True,
            "s3": {
                "bucket": "mlpipeline",
                "endpoint": "minio-service:9000",
                "key": f"artifacts/{wf}/2024/05/01/{pod_name}",
            },
        },
    }
    tjson = json.dumps(template, separators=(",", ":"))
    wf_uid = str(uuid.uuid5(uuid.NAMESPACE_DNS, wf))
    exec_env = [
        {"name": "ARGO_WORKFLOW_NAME", "value": wf},
        {"name": "ARGO_WORKFLOW_UID", "value": wf_uid},
        {"name": "ARGO_TEMPLATE", "value": tjson},
        {"name": "ARGO_NODE_ID", "value": node_id},
    ]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": pod_name,
            "namespace": namespace,
            "labels": {
                "workflows.argoproj.io/workflow": wf,
                "workflows.argoproj.io/completed": "true",
                "pipeline/runid": str(uuid.uuid5(uuid.NAMESPACE_URL, wf)),
                "pipelines.kubeflow.org/cache_enabled": "true",
                "pipelines.kubeflow.org/enable_caching": "true",
                "pipelines.kubeflow.org/kfp_sdk_version": "1.8.22",
                "pipelines.kubeflow.org/pipeline-sdk-type": "kfp",
            },
            "annotations": {
                "workflows.argoproj.io/node-name": f"{wf}.{tmpl_name}",
                "workflows.argoproj.io/node-id": node_id,
                "kubectl.kubernetes.io/default-container": "main",
                "sidecar.istio.io/inject": "false",
                "pipelines.kubeflow.org/component_spec": json.dumps(
                    {
                        "name": tmpl_name,
                        "inputs": [{"name": "n", "type": "Integer"}],
                        "outputs": [{"name": "model"}],
                    },
                    sort_keys=True,
                ),
                "pipelines.kubeflow.org/component_ref": "{}",
                "pipelines.kubeflow.org/arguments.parameters": json.dumps({"n": str(step)}),
            },
            "ownerReferences": [
                {
                    "apiVersion": "argoproj.io/v1alpha1",
                    "kind": "Workflow",
                    "name": wf,
                    "uid": wf_uid,
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": {
            "serviceAccountName": "pipeline-runner",
            "restartPolicy": "Never",
            "initContainers": [
                {
                    "name": "init",
                    "image": "quay.io/argoproj/argoexec:v3.5.14",
                    "command": ["argoexec", "init", "--loglevel", "info"],
                    "env": exec_env,
                }
            ],
            "containers": [
                {
                    "name": "wait",
                    "image": "quay.io/argoproj/argoexec:v3.5.14",
                    "command": ["argoexec", "wait", "--loglevel", "info"],
                    "env": exec_env,
                },
                {
                    "name": "main",
                    "image": "python:3.9",
                    "command": [
                        "/var/run/argo/argoexec",
                        "emissary",
                        "--",
                        "sh",
                        "-ec",
                        "python3 -u main.py",
                    ],
                    "args": ["--n", str(step), "--model", "/tmp/outputs/model/data"],
                    "env": [
                        {"name": "ARGO_CONTAINER_NAME", "value": "main"},
                        {"name": "ARGO_TEMPLATE", "value": tjson},
                    ],
                },
            ],
        },
        "status": {
            "phase": "Succeeded",
            "initContainerStatuses": [_cstatus("init", "quay.io/argoproj/argoexec:v3.5.14")],
            "containerStatuses": [
                _cstatus("main", "python:3.9"),
                _cstatus("wait", "quay.io/argoproj/argoexec:v3.5.14"),
            ],
        },
    }


def main() -> None:
    """Run the benchmark and print its JSON report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=10_000)
    parser.add_argument("--limit", type=int, default=500)
    args = parser.parse_args()

    api = ApiServer().start()
    try:
        sizes = []
        t0 = time.perf_counter()
        for i in range(args.pods):
            raw = api.store.create_raw("pods", kfp_pod(f"pipeline-{i // 5:05d}", i))
            sizes.append(len(raw))
        build_s = time.perf_counter() - t0
        with tempfile.TemporaryDirectory() as tmp:
            kc = api.write_kubeconfig(Path(tmp) / "kubeconfig")
            api_client = config.new_client_from_config(config_file=str(kc))
        v1 = client.CoreV1Api(api_client)
        v1.list_namespaced_pod("kubeflow", limit=1)  # warm the connection
        pages = 0
        count = 0
        token = None
        t0 = time.perf_counter()
        while True:
            resp = v1.list_pod_for_all_namespaces(limit=args.limit, _continue=token, _preload_content=False)
            doc = json.loads(resp.data)
            pages += 1
            count += len(doc["items"])
            token = doc["metadata"].get("continue")
            if not token:
                break
        wall = time.perf_counter() - t0
        api_client.close()
    finally:
        api.stop()
    assert count == args.pods, (count, args.pods)
    print(
        json.dumps(
            {
                "scenario": "emulator-list",
                "pods": count,
                "wall_s": round(wall, 3),
                "pods_per_s": round(count / wall),
                "pages": pages,
                "avg_pod_bytes": round(sum(sizes) / len(sizes)),
                "build_s": round(build_s, 3),
            }
        )
    )


if __name__ == "__main__":
    main()
