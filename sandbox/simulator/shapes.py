"""Builders for the objects Argo writes: pods, WorkflowTaskResults, node entries.

Field order follows the Go structs' declaration order (``encoding/json`` prints
fields in that order), so ``json.dumps`` of these dicts reads like the real thing.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from sandbox.simulator.profiles import ArgoProfile

WF_API = "argoproj.io/v1alpha1"
LABEL_WORKFLOW = "workflows.argoproj.io/workflow"
LABEL_COMPLETED = "workflows.argoproj.io/completed"
LABEL_ON_EXIT = "workflows.argoproj.io/on-exit"
LABEL_REPORT_COMPLETED = "workflows.argoproj.io/report-outputs-completed"
ANN_NODE_NAME = "workflows.argoproj.io/node-name"
ANN_NODE_ID = "workflows.argoproj.io/node-id"
ANN_TEMPLATE = "workflows.argoproj.io/template"
ANN_OUTPUTS = "workflows.argoproj.io/outputs"
ANN_REPORT_COMPLETED = "workflows.argoproj.io/report-outputs-completed"
ANN_DEFAULT_CONTAINER = "kubectl.kubernetes.io/default-container"
ANN_POD_NAME_FORMAT = "workflows.argoproj.io/pod-name-format"

ZERO_TIME = "0001-01-01T00:00:00Z"

_TEMPLATE_ORDER = (
    "name", "inputs", "outputs", "nodeSelector", "affinity", "metadata", "daemon", "steps",
    "container", "containerSet", "script", "resource", "dag", "suspend", "data", "http",
    "plugin", "volumes", "initContainers", "sidecars", "archiveLocation",
    "activeDeadlineSeconds", "retryStrategy", "parallelism", "failFast", "tolerations",
    "schedulerName", "priorityClassName", "priority", "serviceAccountName",
    "automountServiceAccountToken", "executor", "hostAliases", "securityContext",
    "podSpecPatch", "metrics", "synchronization", "memoize", "timeout",
)
CONTAINER_ORDER = (
    "name", "image", "command", "args", "workingDir", "ports", "envFrom", "env", "resources",
    "resizePolicy", "restartPolicy", "volumeMounts", "volumeDevices", "livenessProbe",
    "readinessProbe", "startupProbe", "lifecycle", "terminationMessagePath",
    "terminationMessagePolicy", "imagePullPolicy", "securityContext", "stdin", "stdinOnce", "tty",
)
_ARTIFACT_ORDER = (
    "name", "path", "mode", "from", "archiveLogs", "s3", "git", "http", "artifactory", "hdfs",
    "raw", "oss", "gcs", "azure", "globalName", "archive", "optional", "subPath",
    "recurseMode", "fromExpression", "artifactGC", "deleted",
)
_PARAM_ORDER = ("name", "default", "value", "valueFrom", "globalName", "enum", "description")
_S3_ORDER = (
    "endpoint", "bucket", "region", "insecure", "accessKeySecret", "secretKeySecret",
    "roleARN", "useSDKCreds", "createBucketIfNotPresent", "encryptionOptions", "caSecret",
    "sessionTokenSecret", "key", "keyFormat",
)
NODE_ORDER = (
    "id", "name", "displayName", "type", "templateName", "templateRef", "templateScope",
    "phase", "boundaryID", "message", "startedAt", "finishedAt", "estimatedDuration",
    "progress", "resourcesDuration", "podIP", "daemoned", "nodeFlag", "inputs", "outputs",
    "children", "outboundNodes", "hostNodeName", "memoizationStatus", "synchronizationStatus",
)


def ordered(d: dict[str, Any], order: tuple[str, ...]) -> dict[str, Any]:
    """``d`` with keys in ``order`` first (unknown keys keep their order, at the end)."""
    out = {k: d[k] for k in order if k in d}
    for k, v in d.items():
        if k not in out:
            out[k] = v
    return out


def order_artifact(a: dict[str, Any]) -> dict[str, Any]:
    """An artifact dict in ``wfv1.Artifact`` field order."""
    a = ordered(a, _ARTIFACT_ORDER)
    if isinstance(a.get("s3"), dict):
        a["s3"] = ordered(a["s3"], _S3_ORDER)
    return a


def order_io(io: dict[str, Any] | None) -> dict[str, Any]:
    """Inputs/Outputs with ordered parameters and artifacts."""
    if not io:
        return {}
    out: dict[str, Any] = {}
    if io.get("parameters"):
        out["parameters"] = [ordered(p, _PARAM_ORDER) for p in io["parameters"]]
    if io.get("artifacts"):
        out["artifacts"] = [order_artifact(a) for a in io["artifacts"]]
    for k in ("result", "exitCode"):
        if k in io:
            out[k] = io[k]
    return out


def template_for_pod(tmpl: dict[str, Any], archive_location: dict[str, Any],
                     *, inputs_artifacts_only: bool = False) -> dict[str, Any]:
    """The template as the controller hands it to the executor (ARGO_TEMPLATE / annotation).

    ``tmpl`` is already processed (parameters, workflow vars and pod.name
    substituted; input artifacts resolved).
    """
    t = copy.deepcopy(tmpl)
    inputs = order_io(t.get("inputs"))
    if inputs_artifacts_only:
        inputs = {"artifacts": inputs["artifacts"]} if inputs.get("artifacts") else {}
    t["inputs"] = inputs
    t["outputs"] = order_io(t.get("outputs"))
    md = t.get("metadata") or {}
    t["metadata"] = {k: md[k] for k in ("annotations", "labels") if md.get(k)}
    if isinstance(t.get("container"), dict):
        c = dict(t["container"])
        c["name"] = ""
        c.setdefault("resources", {})
        t["container"] = ordered(c, CONTAINER_ORDER)
    t["archiveLocation"] = archive_location
    return ordered(t, _TEMPLATE_ORDER)


def template_json(t: dict[str, Any]) -> str:
    """Compact JSON as Go's encoding/json writes it (HTML characters escaped)."""
    s = json.dumps(t, separators=(",", ":"), ensure_ascii=False)
    return s.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def owner_ref_workflow(wf_name: str, wf_uid: str, *, controller: bool = True) -> dict[str, Any]:
    """The ownerReference a pod (controller) or task result (plain) has to its Workflow."""
    ref: dict[str, Any] = {"apiVersion": WF_API, "kind": "Workflow", "name": wf_name, "uid": wf_uid}
    if controller:
        ref["controller"] = True
        ref["blockOwnerDeletion"] = True
    return ref


def _env(name: str, value: str) -> dict[str, Any]:
    return {"name": name, "value": value}


def _field_env(name: str, path: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": path}}}


def executor_env(
    profile: ArgoProfile,
    container: str,
    *,
    wf_name: str,
    wf_uid: str,
    node_id: str,
    template_value: str | None,
    deadline: str,
) -> list[dict[str, Any]]:
    """The env Argo puts on ``init``/``wait`` (executor) or ``main`` containers."""
    env: list[dict[str, Any]] = []
    executor = container in ("init", "wait")
    if executor:
        env.append(_field_env("ARGO_POD_NAME", "metadata.name"))
        if profile.version != "3.1":
            env.append(_field_env("ARGO_POD_UID", "metadata.uid"))
        if profile.runtime_executor_env:
            env.append(_env("ARGO_CONTAINER_RUNTIME_EXECUTOR", profile.executor))
        env.append(_env("GODEBUG", "x509ignoreCN=0"))
        if profile.version != "3.1":
            env.append(_env("ARGO_WORKFLOW_NAME", wf_name))
        if profile.workflow_uid_env:
            env.append(_env("ARGO_WORKFLOW_UID", wf_uid))
    env.append(_env("ARGO_CONTAINER_NAME", container))
    if template_value is not None:
        env.append(_env("ARGO_TEMPLATE", template_value))
    if profile.version == "3.1":
        env.append(_env("ARGO_INCLUDE_SCRIPT_OUTPUT", "false"))
        return env
    env.extend([
        _env("ARGO_NODE_ID", node_id),
        _env("ARGO_INCLUDE_SCRIPT_OUTPUT", "false"),
        _env("ARGO_DEADLINE", deadline),
        _env("ARGO_PROGRESS_FILE", "/var/run/argo/progress"),
        _env("ARGO_PROGRESS_PATCH_TICK_DURATION", "1m0s"),
        _env("ARGO_PROGRESS_FILE_TICK_DURATION", "3s"),
    ])
    return env


def executor_command(profile: ArgoProfile, verb: str, *extra: str) -> list[str]:
    """``argoexec <verb> [extra] --loglevel info [--log-format text]``."""
    cmd = ["argoexec", verb, *extra, "--loglevel", "info"]
    if profile.log_format_flag:
        cmd += ["--log-format", "text"]
    return cmd


def container_status(name: str, image: str, state: str, *, started: str | None,
                     finished: str | None = None, exit_code: int = 0,
                     container_id_seed: str = "") -> dict[str, Any]:
    """A ``v1.ContainerStatus`` in state waiting / running / terminated."""
    st: dict[str, Any]
    if state == "waiting":
        st = {"waiting": {"reason": "PodInitializing"}}
    elif state == "running":
        st = {"running": {"startedAt": started}}
    else:
        st = {"terminated": {"exitCode": exit_code,
                             "reason": "Completed" if exit_code == 0 else "Error",
                             "startedAt": started, "finishedAt": finished,
                             "containerID": f"containerd://{container_id_seed}"}}
    cs: dict[str, Any] = {"name": name, "state": st, "lastState": {},
                          "ready": state == "running", "restartCount": 0,
                          "image": image, "imageID": "",
                          "started": state == "running"}
    if state != "waiting":
        cs["containerID"] = f"containerd://{container_id_seed}"
    return cs


def task_result(
    profile: ArgoProfile,
    *,
    namespace: str,
    node_id: str,
    wf_name: str,
    wf_uid: str,
    pod_name: str,
    pod_uid: str,
    outputs: dict[str, Any] | None,
    completed: bool,
) -> dict[str, Any]:
    """A WorkflowTaskResult as the executor writes it (NodeResult inlined, no spec)."""
    labels = {LABEL_WORKFLOW: wf_name}
    if profile.report_outputs_completed:
        labels[LABEL_REPORT_COMPLETED] = "true" if completed else "false"
    if profile.taskresult_owner == "Workflow":
        owner = owner_ref_workflow(wf_name, wf_uid, controller=False)
    else:
        owner = {"apiVersion": "v1", "kind": "pods" if profile.taskresult_owner_kind_pods else "Pod",
                 "name": pod_name, "uid": pod_uid}
    obj: dict[str, Any] = {
        "apiVersion": WF_API,
        "kind": "WorkflowTaskResult",
        "metadata": {"name": node_id, "namespace": namespace, "labels": labels,
                     "ownerReferences": [owner]},
    }
    if outputs:
        obj["outputs"] = outputs
    return obj


def merge_pod_spec_patch(spec: dict[str, Any], patch: dict[str, Any]) -> None:
    """Apply a template ``podSpecPatch`` (strategic-merge-like: containers by name)."""
    for key, value in patch.items():
        if key in ("containers", "initContainers") and isinstance(value, list):
            existing = {c.get("name"): c for c in spec.get(key, [])}
            for pc in value:
                target = existing.get(pc.get("name"))
                if target is None:
                    spec.setdefault(key, []).append(pc)
                else:
                    _deep_merge(target, pc)
        elif isinstance(value, dict) and isinstance(spec.get(key), dict):
            _deep_merge(spec[key], value)
        else:
            spec[key] = value


def _deep_merge(dst: dict[str, Any], src: dict[str, Any]) -> None:
    for k, v in src.items():
        if isinstance(v, dict) and isinstance(dst.get(k), dict):
            _deep_merge(dst[k], v)
        else:
            dst[k] = v
