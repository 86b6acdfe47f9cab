"""Desired steps from a Workflow object alone, for steps whose pod is gone.

Argo's pod GC (or the loss of a node) deletes a step's pod, but the step keeps
its entry in the Workflow's `status.nodes` (or `status.compressedNodes`). This
module rebuilds, from the Workflow's `metadata`, `spec.templates` (and
`status.storedTemplates` / `status.storedWorkflowTemplateSpec`), `status.nodes`
and `status.artifactRepositoryRef`, the very `DesiredStep` that
`reconcile.desired.desired_step` computes from the step's pod: both paths end
in `reconcile.desired.step_from_parts`, so the execution key, type, properties,
custom properties, state, inputs, outputs and context agree field for field.
Pure: no I/O.

How each part the pod path reads from the pod is rebuilt from the Workflow
(docs/argo-anatomy.md):

- **Identity**: the namespace, name and uid of the Workflow (the pod's
  ownerReference carries the same uid) and the `status.nodes` key (the pod's
  `node-id` annotation is that key).
- **Pod name** (`kfp_pod_name`, and the adoption of upstream records): Argo
  stores no pod name on a node (§1), so it is recomputed with
  `reconcile.argo.pod_name_for` from the node name and the template name,
  under the scheme the Workflow's `workflows.argoproj.io/pod-name-format`
  annotation names (`v1`, `v2`, any other value Argo's default v2), else v1.
- **Pod annotations and labels** (component spec, parameter arguments, and the
  classification): `spec.podMetadata`, then the template's `metadata` (which
  wins), substituted as Argo's `common.SubstituteParams` does when it creates
  the pod: `{{workflow.*}}` globals, `{{pod.name}}`, `{{node.name}}`,
  `{{retries}}`, `{{inputs.parameters.*}}` (from the node's resolved inputs),
  `{{inputs.artifacts.*.path}}`, and `{{workflow.status}}` in exit handlers.
  Values are inserted verbatim into the decoded text (Argo escapes them for
  the JSON text of the whole template, which the decoding undoes), so the
  sha256 of `component_spec` is taken over the text the pod carries, and a
  loop item that breaks the `arguments.parameters` JSON breaks it here too
  (the same warning).
- **Template** (name, input artifacts, archive location): the template name
  from the spec; the input artifacts are the node's `inputs.artifacts`, which
  are exactly the resolved (key-only) artifacts of the pod's ARGO_TEMPLATE;
  the archive location is the template's own `archiveLocation` when it names
  a location, else `status.artifactRepositoryRef.artifactRepository` --
  Argo's `addArchiveLocation` fills the pod's `archiveLocation` from that same
  repository, frozen at workflow start -- else the configured repository.
- **State**: node phase Running/Succeeded/Failed/Error -> RUNNING/COMPLETE/
  FAILED/FAILED (Pending -> NEW; see below why pending nodes give no step).
- **Outputs**: the node's `outputs.artifacts` once the node phase is terminal
  (None before), through the same `reported_output_artifacts` as the pod path.

Nodes that give no step, and why:

- Not `type: Pod` (DAG, Retry, Skipped/Omitted, Suspend, ...): no pod, no
  execution, exactly as on the pod path.
- Nodes in `exclude_node_ids`: the caller still has their pods, and pods win.
- Nodes with no trace of a pod: `Pending` (Argo creates the node before the
  pod, and a node stays Pending while pod creation fails, so a Pending node
  whose pod is not listed may never get one -- and if it does, the pod path
  records it); `Failed`/`Error` nodes with neither `hostNodeName`, `podIP`,
  `outputs`, `resourcesDuration` nor a "pod deleted" message (Argo failed them
  before any pod ran: unknown template, missing input, deadline); memoization
  hits. A pod GC never deletes a pod whose node is not fulfilled, so nothing a
  finished pod would record is lost.
- Steps the pod path skips: the synthetic pod view (labels, annotations, main
  container command from the template) goes through the same `classify`
  (TFX, KFP v2, opted out with `metadata_written`, non-KFP by setting).
- **KFP cache hits**: the cache webhook marks only the *pod*
  (`reused_from_cache`, the original's `metadata_execution_id`); nothing in
  the Workflow says so. A hit is recognised by its outputs: it reports the
  original step's artifacts (keys outside this node's own archive key
  `keyFormat` with this `pod.name`), or, with task results (Argo 3.5), none at
  all, where a step that ran has its `main-logs` under its own key whenever
  `archiveLogs` is on. Such nodes give no step whatever `record_cache_hits`
  says: the original execution id is on the gone pod only, and recording the
  original's artifacts again would duplicate them by URI.

Where the two paths can still disagree (not fixable from the Workflow):

- Annotations or labels added to the pod after Argo made it (mutating
  webhooks, `kubectl annotate`, the cache webhook) are not in the Workflow;
  only `component_spec`, `arguments.parameters` and the classifying keys
  matter, and those come from the compiled template.
- The `workflow.*` globals are those Argo derives from the Workflow object
  (name, namespace, uid, serviceAccountName, creationTimestamp and its
  Y/m/d/H/M/S/RFC3339 parts, priority, parameters, labels, annotations); a
  label that changed after the pod was made (e.g. Argo's own
  `workflows.argoproj.io/phase`) substitutes its current value. `{{=...}}`
  expression tags are left as they are.
- The pod-name scheme: without the annotation, Argo 3.4.0-3.4.6 assumed v2
  and >= 3.4.7 follows the controller's POD_NAMES variable, which the
  Workflow does not show; v1 is assumed (Argo >= 3.4 stamps the annotation).
- Without `status.artifactRepositoryRef.artifactRepository` (Argo < 3.1) the
  configured repository stands in for the one the pod used.
- A node's phase lags its pod's (pod Succeeded, node still Running until the
  controller assesses it), and a running step's outputs may already be on the
  pod (annotation, task result); here they wait for the terminal phase.
- An offloaded ARGO_TEMPLATE (Argo >= 3.6, > 128 KiB) is an error on the pod
  path (the template is not on the pod) but not here.
- A Workflow whose nodes Argo offloaded to its database (empty `status.nodes`,
  `status.offloadNodeStatusVersion` set) gives no steps and no error here: a
  live pass still has its pods, and readers of stored Workflows check
  `reconcile.argo.offloaded_nodes_version` first and report such runs as
  unrecoverable (docs/stored-runs.md).

Errors: one malformed node (missing fields, unknown template, bad artifacts)
is reported as `(node id, PodError)` and the other nodes still give steps; a
malformed Workflow (no name/uid, bad `compressedNodes`, `spec.templates` not a
list) gives no steps and one error under the Workflow's name, which is also
its root node's id.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Set
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from reconcile import conventions as c
from reconcile.argo import (
    JSON,
    TERMINAL_NODE_PHASES,
    PodView,
    pod_name_for,
    pod_name_scheme,
    reported_output_artifacts,
    workflow_nodes,
)
from reconcile.classify import Disposition, classify
from reconcile.desired import step_from_parts
from reconcile.errors import PodError, Reason
from reconcile.options import ReconcileOptions
from reconcile.records import DesiredStep, ExecutionState, StepRef

# workflow/common/common.go DefaultArchivePattern: the key when a repository names no keyFormat.
DEFAULT_ARCHIVE_PATTERN = "{{workflow.name}}/{{pod.name}}"
MAIN_LOGS_ARTIFACT = "main-logs"

NODE_PHASE_STATE = {
    "Pending": ExecutionState.NEW,
    "Running": ExecutionState.RUNNING,
    "Succeeded": ExecutionState.COMPLETE,
    "Failed": ExecutionState.FAILED,
    "Error": ExecutionState.FAILED,
}
# The pod phase a node phase stands for, in the synthetic pod view given to `classify`.
_NODE_POD_PHASE = {"Error": "Failed"}
# Fields Argo fills on a node only from its pod (assessNodeStatus).
_POD_TRACES = ("hostNodeName", "podIP", "outputs", "resourcesDuration")
_LOCATION_KINDS = ("s3", "gcs", "azure", "oss", "hdfs", "http", "artifactory")
_RETRY_ATTEMPT = re.compile(r"\((\d+)\)$")
_TIMESTAMP_PARTS = "YmdHMS"


def substitute(text: str, env: Mapping[str, str]) -> str:
    """`{{tag}}` placeholders replaced as Argo's `template.Replace` does with unresolved tags allowed.

    A tag runs from `{{` to the next `}}`, its name is trimmed of spaces, a
    known name is replaced by its value verbatim and an unknown one (or an
    `{{=expression}}`) is kept as it was.
    """
    if "{{" not in text:
        return text
    out: list[str] = []
    pos = 0
    while True:
        start = text.find("{{", pos)
        if start < 0:
            break
        end = text.find("}}", start + 2)
        if end < 0:
            break
        tag = text[start + 2 : end]
        value = env.get(tag.strip())
        out.append(text[pos:start])
        out.append(value if value is not None else text[start : end + 2])
        pos = end + 2
    out.append(text[pos:])
    return "".join(out)


def _substitute_values(value: Any, env: Mapping[str, str]) -> Any:
    if isinstance(value, str):
        return substitute(value, env)
    if isinstance(value, list):
        return [_substitute_values(v, env) for v in value]
    if isinstance(value, dict):
        return {k: _substitute_values(v, env) for k, v in value.items()}
    return value


def _str_map(value: Any, what: str, reason: Reason) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise PodError(reason, f"{what} is not a map of strings")
    return value


def _dict(value: Any, what: str, reason: Reason = Reason.MALFORMED_POD) -> JSON:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise PodError(reason, f"{what} is not an object")
    return value


def workflow_globals(workflow: JSON) -> dict[str, str]:
    """The `{{workflow.*}}` values Argo substitutes into every template of `workflow`."""
    meta = _dict(workflow.get("metadata"), "Workflow metadata")
    spec = _dict(workflow.get("spec"), "Workflow spec")
    created = meta.get("creationTimestamp")
    created = created if isinstance(created, str) else ""
    env = {
        "workflow.name": str(meta.get("name", "")),
        "workflow.namespace": str(meta.get("namespace", "")),
        "workflow.uid": str(meta.get("uid", "")),
        "workflow.serviceAccountName": str(spec.get("serviceAccountName", "")),
        "workflow.creationTimestamp": created,
        "workflow.creationTimestamp.RFC3339": created,
        "workflow.priority": str(spec.get("priority", 0)),
    }
    try:
        when = datetime.strptime(created, "%Y-%m-%dT%H:%M:%SZ")
    except ValueError:
        when = None
    if when is not None:
        for part in _TIMESTAMP_PARTS:
            env[f"workflow.creationTimestamp.{part}"] = when.strftime(f"%{part}")
    for kind in ("labels", "annotations"):
        labels = meta.get(kind)
        if isinstance(labels, dict):
            env.update({f"workflow.{kind}.{k}": v for k, v in labels.items() if isinstance(v, str)})
    arguments = _dict(spec.get("arguments"), "Workflow spec.arguments")
    parameters = arguments.get("parameters") or []
    if not isinstance(parameters, list):
        raise PodError(Reason.MALFORMED_POD, "Workflow spec.arguments.parameters is not a list")
    # Like substituteGlobalVariables: globals (and earlier parameters) resolve inside values.
    for parameter in parameters:
        if isinstance(parameter, dict) and isinstance(parameter.get("name"), str) and "value" in parameter:
            env[f"workflow.parameters.{parameter['name']}"] = substitute(str(parameter["value"]), env)
    return env


@dataclass(frozen=True)
class _Workflow:
    """The Workflow-wide facts every node's step needs, read once."""

    namespace: str
    name: str
    uid: str
    pod_name_scheme: str
    globals: dict[str, str]
    templates: dict[str, JSON]
    stored_templates: dict[str, JSON]
    repository: JSON | None  # status.artifactRepositoryRef.artifactRepository
    archive_logs: bool | None  # spec.archiveLogs
    pod_labels: dict[str, str]  # spec.podMetadata, substituted
    pod_annotations: dict[str, str]
    exit_handler_prefix: str | None


def _read_workflow(workflow: Any) -> _Workflow:
    if not isinstance(workflow, dict):
        raise PodError(Reason.MALFORMED_POD, "Workflow is not a JSON object")
    meta = _dict(workflow.get("metadata"), "Workflow metadata")
    name, namespace, uid = meta.get("name"), meta.get("namespace", "default"), meta.get("uid")
    if not isinstance(name, str) or not name or not isinstance(namespace, str):
        raise PodError(Reason.MALFORMED_POD, "Workflow has no metadata.name/namespace")
    if not isinstance(uid, str) or not uid:
        raise PodError(
            Reason.MALFORMED_POD, "Workflow has no metadata.uid, so its step keys cannot be derived"
        )
    annotations = _str_map(meta.get("annotations"), "Workflow metadata.annotations", Reason.MALFORMED_POD)
    spec = _dict(workflow.get("spec"), "Workflow spec")
    status = _dict(workflow.get("status"), "Workflow status")
    env = workflow_globals(workflow)

    templates = _templates(spec.get("templates"), "Workflow spec.templates")
    stored_spec = _dict(status.get("storedWorkflowTemplateSpec"), "status.storedWorkflowTemplateSpec")
    for key, template in _templates(stored_spec.get("templates"), "stored templates").items():
        templates.setdefault(key, template)
    stored = {
        k: v
        for k, v in _dict(status.get("storedTemplates"), "status.storedTemplates").items()
        if isinstance(v, dict)
    }

    ref = _dict(status.get("artifactRepositoryRef"), "status.artifactRepositoryRef")
    repository = ref.get("artifactRepository")
    pod_metadata = _dict(spec.get("podMetadata"), "Workflow spec.podMetadata")
    on_exit = spec.get("onExit")
    archive_logs = spec.get("archiveLogs")
    return _Workflow(
        namespace=namespace,
        name=name,
        uid=uid,
        pod_name_scheme=pod_name_scheme(annotations),
        globals=env,
        templates=templates,
        stored_templates=stored,
        repository=repository if isinstance(repository, dict) else None,
        archive_logs=archive_logs if isinstance(archive_logs, bool) else None,
        pod_labels=_substitute_values(
            _str_map(pod_metadata.get("labels"), "spec.podMetadata.labels", Reason.MALFORMED_POD), env
        ),
        pod_annotations=_substitute_values(
            _str_map(pod_metadata.get("annotations"), "spec.podMetadata.annotations", Reason.MALFORMED_POD),
            env,
        ),
        exit_handler_prefix=f"{name}.onExit" if isinstance(on_exit, str) and on_exit else None,
    )


def _templates(value: Any, what: str) -> dict[str, JSON]:
    if value is None:
        return {}
    if not isinstance(value, list):
        raise PodError(Reason.MALFORMED_POD, f"{what} is not a list")
    return {t["name"]: t for t in value if isinstance(t, dict) and isinstance(t.get("name"), str)}


def _find_template(wf: _Workflow, node_id: str, node: JSON) -> JSON:
    """The spec (or stored) template a node ran, as `resolveTemplateReference` finds it."""
    ref = node.get("templateRef")
    if isinstance(ref, dict):
        scope = "cluster" if ref.get("clusterScope") else "namespaced"
        key = f"{scope}/{ref.get('name')}/{ref.get('template')}"
        template = wf.stored_templates.get(key)
        if template is None:
            raise PodError(
                Reason.TEMPLATE_MISSING,
                f"node {node_id}: templateRef {key!r} is not in status.storedTemplates",
            )
        return template
    name = node.get("templateName")
    if not isinstance(name, str) or not name:
        raise PodError(Reason.MALFORMED_POD, f"node {node_id} has neither templateName nor templateRef")
    scope = node.get("templateScope")
    template = None
    if isinstance(scope, str) and scope and not scope.startswith("local/"):
        template = wf.stored_templates.get(f"{scope}/{name}")
    if template is None:
        template = wf.templates.get(name)
    if template is None:
        raise PodError(
            Reason.TEMPLATE_MISSING, f"node {node_id}: template {name!r} is not in the Workflow's templates"
        )
    return template


def _ran_in_a_pod(node: JSON) -> bool:
    """Whether the node shows a trace of a pod that Argo created and ran."""
    memo = node.get("memoizationStatus")
    if isinstance(memo, dict) and memo.get("hit"):
        return False
    phase = node.get("phase")
    if phase in ("Running", "Succeeded"):
        return True
    if phase in ("Failed", "Error"):
        message = node.get("message")
        return any(node.get(k) for k in _POD_TRACES) or (
            isinstance(message, str) and "pod deleted" in message
        )
    return False  # Pending (pod maybe not created), Skipped, Omitted, unknown


def _local_env(wf: _Workflow, node: JSON, node_name: str, pod_name: str, root_phase: str) -> dict[str, str]:
    """Argo's local variables for the pod of `node`, on top of the workflow globals."""
    env = dict(wf.globals)
    match = _RETRY_ATTEMPT.search(node_name)
    env.update({"pod.name": pod_name, "node.name": node_name, "retries": match.group(1) if match else "0"})
    prefix = wf.exit_handler_prefix
    if prefix and (node_name == prefix or node_name.startswith((prefix + ".", prefix + "("))):
        env["workflow.status"] = root_phase
    inputs = _dict(node.get("inputs"), "node inputs")
    parameters = inputs.get("parameters") or []
    artifacts = inputs.get("artifacts") or []
    if not isinstance(parameters, list) or not isinstance(artifacts, list):
        raise PodError(Reason.MALFORMED_POD, "node inputs.parameters/artifacts is not a list")
    for parameter in parameters:
        if not isinstance(parameter, dict) or not isinstance(parameter.get("name"), str):
            raise PodError(Reason.MALFORMED_POD, "node input parameter has no name")
        if parameter.get("value") is not None:
            env[f"inputs.parameters.{parameter['name']}"] = str(parameter["value"])
    for artifact in artifacts:
        path = artifact.get("path") if isinstance(artifact, dict) else None
        if isinstance(path, str) and path and isinstance(artifact.get("name"), str):
            env[f"inputs.artifacts.{artifact['name']}.path"] = path
    return env


def _has_location(location: Any) -> bool:
    return isinstance(location, dict) and any(k != "archiveLogs" for k in location)


def _archive_logs(wf: _Workflow, archive: JSON | None) -> bool:
    """Argo's `IsArchiveLogs`: the repository's setting, else the Workflow's, else the template's."""
    if wf.repository is not None and wf.repository.get("archiveLogs") is True:
        return True
    logs = bool(wf.archive_logs)
    if isinstance(archive, dict) and isinstance(archive.get("archiveLogs"), bool):
        logs = archive["archiveLogs"]
    return logs


def _own_archive_key(wf: _Workflow, own_location: JSON | None, env: Mapping[str, str]) -> str | None:
    """The s3 key under which this node's pod saved its outputs (None: not an s3 repository)."""
    if own_location is not None:
        s3 = own_location.get("s3")
        key = s3.get("key") if isinstance(s3, dict) else None
        return key if isinstance(key, str) and key else None
    s3 = (wf.repository or {}).get("s3")
    if not isinstance(s3, dict):
        return None
    key_format = s3.get("keyFormat") or DEFAULT_ARCHIVE_PATTERN
    return substitute(key_format, env) if isinstance(key_format, str) else None


def _reused_from_cache(
    wf: _Workflow, node: JSON, template: JSON, own_location: JSON | None, env: Mapping[str, str]
) -> bool:
    """A KFP cache hit: it reports the original step's artifacts, or none at all (see module doc)."""
    if node.get("phase") != "Succeeded":
        return False
    prefix = _own_archive_key(wf, own_location, env)
    if prefix is None:
        return False
    prefix += "/"
    outputs = node.get("outputs") or {}
    artifacts = outputs.get("artifacts") or [] if isinstance(outputs, dict) else None
    if not isinstance(artifacts, list) or not all(isinstance(a, dict) for a in artifacts):
        return False  # malformed: reported by the outputs' own check
    declared = template.get("outputs")
    declared = declared.get("artifacts") if isinstance(declared, dict) else None
    explicit = {
        a.get("name")
        for a in (declared if isinstance(declared, list) else ())
        if isinstance(a, dict) and any(k in a for k in _LOCATION_KINDS)
    }
    own_logs = False
    for artifact in artifacts:
        s3 = artifact.get("s3")
        key = s3.get("key") if isinstance(s3, dict) else None
        if not isinstance(key, str) or artifact.get("name") in explicit or s3.get("bucket"):
            continue
        if not key.startswith(prefix):
            return True
        own_logs |= artifact.get("name") == MAIN_LOGS_ARTIFACT
    runs_main = "container" in template or "script" in template
    location = template.get("archiveLocation")
    return runs_main and not own_logs and _archive_logs(wf, location if isinstance(location, dict) else None)


def _step_for_node(
    wf: _Workflow, node_id: str, node: JSON, options: ReconcileOptions, root_phase: str
) -> DesiredStep | None:
    node_type = node.get("type")
    if not isinstance(node_type, str):
        raise PodError(Reason.MALFORMED_POD, f"node {node_id} has no type")
    if node_type != "Pod":
        return None
    phase = node.get("phase")
    if not isinstance(phase, str):
        raise PodError(Reason.MALFORMED_POD, f"node {node_id} has no phase")
    if node.get("id", node_id) != node_id:
        raise PodError(Reason.MALFORMED_POD, f"node {node_id} says its id is {node.get('id')!r}")
    if not _ran_in_a_pod(node):
        return None
    node_name = node.get("name")
    if not isinstance(node_name, str) or not node_name:
        raise PodError(Reason.MALFORMED_POD, f"node {node_id} has no name")
    spec_template = _find_template(wf, node_id, node)
    template_name = spec_template.get("name") or ""
    if not isinstance(template_name, str):
        raise PodError(Reason.MALFORMED_TEMPLATE, f"node {node_id}: template name is not a string")
    pod_name = pod_name_for(wf.name, template_name, node_id, wf.pod_name_scheme, node_name)
    env = _local_env(wf, node, node_name, pod_name, root_phase)

    # What addMetadata puts on the pod: podMetadata, then the template's metadata (which wins).
    what = f"template {template_name!r} metadata"
    metadata = _dict(spec_template.get("metadata"), what, Reason.MALFORMED_TEMPLATE)
    template_labels = _str_map(metadata.get("labels"), f"{what}.labels", Reason.MALFORMED_TEMPLATE)
    template_annotations = _str_map(
        metadata.get("annotations"), f"{what}.annotations", Reason.MALFORMED_TEMPLATE
    )
    labels = {c.ARGO_WORKFLOW_LABEL: wf.name, **wf.pod_labels, **_substitute_values(template_labels, env)}
    annotations = {
        c.ARGO_NODE_NAME_ANNOTATION: node_name,
        c.ARGO_NODE_ID_ANNOTATION: node_id,
        **wf.pod_annotations,
        **_substitute_values(template_annotations, env),
    }
    container = spec_template.get("container")
    command = container.get("command") if isinstance(container, dict) else None
    command = _substitute_values(command, env) if isinstance(command, list) else []
    view = PodView(
        namespace=wf.namespace,
        name=pod_name,
        labels=labels,
        annotations=annotations,
        phase=_NODE_POD_PHASE.get(phase, phase),
        workflow_name=wf.name,
        workflow_uid=wf.uid,
        containers=[{"name": "main", "command": command}],
        init_containers=[],
    )
    if classify(view, options) is not Disposition.RECORD:
        return None

    own_location = spec_template.get("archiveLocation")
    own_location = _substitute_values(own_location, env) if _has_location(own_location) else None
    if _reused_from_cache(wf, node, spec_template, own_location, env):
        return None
    archive = own_location if own_location is not None else wf.repository
    inputs = _dict(node.get("inputs"), f"node {node_id} inputs")
    template = {
        "name": template_name,
        "inputs": {"artifacts": inputs.get("artifacts") or []},
        "archiveLocation": archive,
    }

    def reported() -> list[JSON] | None:
        if phase not in TERMINAL_NODE_PHASES:
            return None
        return reported_output_artifacts(None, None, node)

    ref = StepRef(wf.namespace, wf.name, wf.uid, node_id, pod_name)
    state = NODE_PHASE_STATE.get(phase, ExecutionState.UNKNOWN)
    return step_from_parts(ref, template, annotations, state, options, reported_outputs=reported)


def desired_steps_from_workflow(
    workflow: JSON,
    options: ReconcileOptions,
    *,
    exclude_node_ids: Set[str] = frozenset(),
) -> tuple[list[DesiredStep], list[tuple[str, PodError]]]:
    """The desired steps of a Workflow's Pod nodes, computed without their pods.

    One `DesiredStep` per `type: Pod` node that ran in a pod, equal to what
    `reconcile.desired.desired_step` computes from that pod; nodes in
    `exclude_node_ids` (those whose pods the caller still has: pods win) are
    left out, and so are nodes the pod path would skip (see the module
    docstring). Returns the steps and `(node id, PodError)` for each node
    whose records cannot be derived; a Workflow too malformed to read gives
    one error under its name. Never raises for bad input.
    """
    meta = workflow.get("metadata") if isinstance(workflow, dict) else None
    name = meta.get("name") if isinstance(meta, dict) else None
    where = name if isinstance(name, str) else ""
    try:
        wf = _read_workflow(workflow)
        nodes = workflow_nodes(workflow)
    except PodError as exc:
        return [], [(where, exc)]
    errors: list[tuple[str, PodError]] = []
    raw = (workflow.get("status") or {}).get("nodes")
    if isinstance(raw, dict):
        errors += [
            (k, PodError(Reason.MALFORMED_POD, f"node {k} is not an object"))
            for k, v in raw.items()
            if not isinstance(v, dict) and k not in exclude_node_ids
        ]
    root = nodes.get(wf.name) or {}
    root_phase = root.get("phase") if isinstance(root.get("phase"), str) else ""
    steps: list[DesiredStep] = []
    for node_id, node in nodes.items():
        if node_id in exclude_node_ids:
            continue
        try:
            step = _step_for_node(wf, node_id, node, options, root_phase)
        except PodError as exc:
            errors.append((node_id, exc))
            continue
        if step is not None:
            steps.append(step)
    return steps, errors
