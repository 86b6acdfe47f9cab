"""Desired state: one pod (and its Argo outputs) -> the records MLMD should hold.

Follows docs/kfp-contract.md §1 field by field; the deviations listed in
its §4 are marked where they happen.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections.abc import Callable, Mapping
from typing import Any

from reconcile import conventions as c
from reconcile import keys
from reconcile.argo import JSON, PodView, parse_json_text, reported_output_artifacts, template_of
from reconcile.classify import Disposition
from reconcile.errors import PodError, Reason
from reconcile.options import ReconcileOptions
from reconcile.records import (
    DesiredArtifact,
    DesiredContext,
    DesiredExecution,
    DesiredInput,
    DesiredStep,
    ExecutionState,
    Properties,
    StepRef,
)
from reconcile.uris import artifact_uri
from reconcile.values import MAX_NAME_CHARS, check_step, checked_text, property_value

_POD_PHASE_STATE = {
    "Pending": ExecutionState.NEW,
    "Running": ExecutionState.RUNNING,
    "Succeeded": ExecutionState.COMPLETE,
    "Failed": ExecutionState.FAILED,
}


def output_name_to_argo(name: str) -> str:
    """The KFP compiler's sanitisation of an output name into an Argo artifact name."""
    return re.sub("-+", "-", re.sub("[^-_0-9A-Za-z]+", "-", name)).strip("-")


def desired_context(workflow_name: str) -> DesiredContext:
    """The KfpRun context of a workflow: named after it, both properties = its name."""
    return DesiredContext(
        key=keys.context_key(workflow_name),
        name=workflow_name,
        properties={"pipeline_name": workflow_name, "run_id": workflow_name},
    )


def _component(annotations: Mapping[str, str], template_name: str) -> tuple[str, str, dict[str, Any]]:
    """(component name, execution type name, component spec) of a step.

    The returned spec is shared between the steps of one component: read it, never change it.
    """
    spec_text = annotations.get(c.COMPONENT_SPEC_ANNOTATION)
    if spec_text is None:
        return template_name, c.EXECUTION_TYPE_PREFIX + template_name, {}
    return _parsed_component(spec_text, template_name)


@functools.lru_cache(maxsize=4096)
def _parsed_component(spec_text: str, template_name: str) -> tuple[str, str, dict[str, Any]]:
    # Every step of a component carries the same spec text: parse and hash it once a process,
    # not once a pod a pass (a pure function of its arguments; errors are not cached).
    where = f"annotation {c.COMPONENT_SPEC_ANNOTATION}"
    spec = parse_json_text(spec_text, where, Reason.MALFORMED_ANNOTATION)
    if not isinstance(spec, dict):
        raise PodError(Reason.MALFORMED_ANNOTATION, f"{where} is not a JSON object")
    name = spec.get("name") or template_name
    if not isinstance(name, str):
        raise PodError(Reason.MALFORMED_ANNOTATION, f"{where}: name is not a string")
    checked_text(name, f"{where}: name {name!r}")
    digest = hashlib.sha256(spec_text.encode("utf-8", "surrogatepass")).hexdigest()
    return name, f"{c.EXECUTION_TYPE_PREFIX}{name}@sha256={digest}", spec


def _parameter_arguments(annotations: Mapping[str, str], warnings: list[str]) -> Properties:
    """`input:<name>` custom properties from the parameter arguments annotation.

    Argo substitutes loop items into this JSON text verbatim, so a dict item
    yields invalid JSON (`{"s": "{"a":1}"}`) on real clusters. The values are
    display-only, so the step is still recorded, without them, and a warning
    says why -- as the upstream writer, which ignored them silently.
    """
    text = annotations.get(c.PARAMETER_ARGUMENTS_ANNOTATION)
    if text is None:
        return {}
    where = f"annotation {c.PARAMETER_ARGUMENTS_ANNOTATION}"
    try:
        arguments = parse_json_text(text, where, Reason.MALFORMED_ANNOTATION)
    except PodError as exc:
        if exc.reason is not Reason.MALFORMED_ANNOTATION:
            raise
        warnings.append(f"{exc.message}; parameter arguments not recorded")
        return {}
    if not isinstance(arguments, dict):
        warnings.append(f"{where} is not a JSON object; parameter arguments not recorded")
        return {}
    properties: Properties = {}
    for name, value in arguments.items():
        key = checked_text(f"input:{name}", f"parameter name {name!r}", max_chars=MAX_NAME_CHARS)
        converted = property_value(value, f"parameter {name!r}")
        if converted is None:
            # MLMD aborts on a Value with nothing set; a null is left out (docs/values.md).
            warnings.append(f"parameter {name!r} is null; left out of the execution's properties")
            continue
        properties[key] = converted
    return properties


def _output_types(spec: dict[str, Any]) -> dict[str, str]:
    """Argo-sanitised output name -> artifact type name, from the component spec."""
    outputs = spec.get("outputs") or []
    if not isinstance(outputs, list):
        raise PodError(Reason.MALFORMED_ANNOTATION, "component_spec outputs is not a list")
    types: dict[str, str] = {}
    for output in outputs:
        if not isinstance(output, dict) or not isinstance(output.get("name"), str):
            raise PodError(Reason.MALFORMED_ANNOTATION, "component_spec output has no name")
        type_name = output.get("type")
        # A structured type such as {"GCSPath": {...}} is named by its only key;
        # the upstream writer crashed on these and never recorded outputs.
        if isinstance(type_name, dict) and len(type_name) == 1:
            type_name = next(iter(type_name))
        if isinstance(type_name, str) and type_name:
            types[output_name_to_argo(output["name"])] = type_name
    return types


def input_name(artifact: JSON) -> str:
    """The INPUT event key: the artifact path minus `/tmp/inputs/` and `/data`."""
    name = artifact.get("path") or artifact.get("name") or ""
    if not isinstance(name, str):
        raise PodError(Reason.MALFORMED_TEMPLATE, "input artifact path is not a string")
    if name.startswith(c.INPUT_PATH_PREFIX):
        name = name[len(c.INPUT_PATH_PREFIX) :]
    if name.endswith(c.INPUT_PATH_SUFFIX):
        name = name[: -len(c.INPUT_PATH_SUFFIX)]
    return name


def _inputs(template: JSON, options: ReconcileOptions) -> tuple[DesiredInput, ...]:
    inputs = template.get("inputs") or {}
    artifacts = inputs.get("artifacts") or [] if isinstance(inputs, dict) else None
    if not isinstance(artifacts, list) or not all(isinstance(a, dict) for a in artifacts):
        raise PodError(Reason.MALFORMED_TEMPLATE, "template inputs.artifacts is not a list")
    archive = _archive_location(template)
    links = []
    for artifact in artifacts:
        uri = artifact_uri(artifact, archive, options.repository)
        if uri is not None:
            links.append(DesiredInput(name=input_name(artifact), uri=uri))
    return tuple(links)


def _archive_location(template: JSON) -> JSON | None:
    archive = template.get("archiveLocation")
    if archive is not None and not isinstance(archive, dict):
        raise PodError(Reason.MALFORMED_TEMPLATE, "template archiveLocation is not an object")
    return archive


def _outputs(
    artifacts: list[JSON],
    template: JSON,
    spec: dict[str, Any],
    ref: StepRef,
    options: ReconcileOptions,
) -> tuple[DesiredArtifact, ...]:
    template_name = template.get("name") or ""
    prefix = f"{template_name}-"
    types = _output_types(spec)
    archive = _archive_location(template)
    by_name: dict[str, DesiredArtifact] = {}
    for artifact in artifacts:
        name = artifact["name"]
        if name.startswith(prefix):
            name = name[len(prefix) :]
        # Checked before it goes into a key (a lone surrogate cannot even be hashed).
        checked_text(name, f"output artifact name {name!r}", max_chars=MAX_NAME_CHARS)
        uri = artifact_uri(artifact, archive, options.repository)
        if uri is None:
            continue
        argo_json = json.dumps(artifact, sort_keys=True)
        by_name[name] = DesiredArtifact(
            key=keys.output_artifact_key(ref.namespace, ref.workflow_uid, ref.node_id, name),
            name=name,
            type_name=types.get(name, c.NO_TYPE),
            uri=uri,
            custom_properties={
                "name": name,
                "pipeline_name": ref.workflow_name,
                "run_id": ref.workflow_name,
                "argo_artifact": property_value(argo_json, f"output artifact {name!r}"),
            },
        )
    return tuple(by_name.values())


def _no_outputs_reported() -> list[JSON] | None:
    return None


def step_from_parts(
    ref: StepRef,
    template: JSON,
    annotations: Mapping[str, str],
    state: ExecutionState,
    options: ReconcileOptions,
    *,
    reported_outputs: Callable[[], list[JSON] | None] = _no_outputs_reported,
    cache_hit: bool = False,
    cached_execution_id: str | None = None,
) -> DesiredStep:
    """The records of one step from parts already read from a pod or from a Workflow.

    `template` is the processed Argo template, of which only `name`,
    `inputs.artifacts` (resolved, possibly key-only) and `archiveLocation`
    are read; `annotations` are the step's pod annotations (the KFP
    `component_spec` and `arguments.parameters` ones are read);
    `reported_outputs` is called, after the execution's parts are validated,
    for the output artifacts reported so far (None: not yet). A cache hit
    (`cache_hit`) is CACHED, links `cached_execution_id` and has no outputs of
    its own. Both `desired_step` (a pod) and `reconcile.from_workflow` (a
    `status.nodes` entry whose pod is gone) build their steps here, so the two
    agree field for field. Raises PodError for bad input.
    """
    template_name = template.get("name") or ""
    if not isinstance(template_name, str):
        raise PodError(Reason.MALFORMED_TEMPLATE, "template name is not a string")
    _check_ref(ref)
    component_name, type_name, spec = _component(annotations, template_name)

    warnings: list[str] = []
    custom: Properties = {
        "kfp_pod_name": ref.pod_name,
        # docs/kfp-contract.md §4: the KFP UI matches `pod_name` against the Argo node id,
        # which differs from the pod name under pod-name scheme v2 (#11457).
        "pod_name": ref.node_id,
        **_parameter_arguments(annotations, warnings),
    }
    outputs: tuple[DesiredArtifact, ...] | None
    if cache_hit:
        state = ExecutionState.CACHED
        if cached_execution_id:
            custom["cached_execution_id"] = cached_execution_id
        # The outputs belong to the original execution; a cache hit adds none.
        outputs = ()
    else:
        reported = reported_outputs()
        outputs = None if reported is None else _outputs(reported, template, spec, ref, options)

    execution = DesiredExecution(
        key=keys.execution_key(ref.namespace, ref.workflow_uid, ref.node_id),
        type_name=type_name,
        properties={
            "pipeline_name": ref.workflow_name,
            "run_id": ref.workflow_name,
            "component_id": component_name,
        },
        custom_properties=custom,
        state=state,
    )
    step = DesiredStep(
        ref=ref,
        context=desired_context(ref.workflow_name),
        execution=execution,
        inputs=_inputs(template, options),
        outputs=outputs,
        warnings=tuple(warnings),
    )
    # The one gate on the way into MLMD: every name, key, URI and value (docs/values.md).
    return check_step(step)


def _check_ref(ref: StepRef) -> None:
    """The parts of a step's keys and names, checked before any key is derived from them."""
    checked_text(ref.namespace, "namespace", max_chars=MAX_NAME_CHARS)
    checked_text(ref.workflow_name, "workflow name", max_chars=MAX_NAME_CHARS)
    checked_text(ref.workflow_uid, "workflow uid", max_chars=MAX_NAME_CHARS)
    checked_text(ref.node_id, "node id", max_chars=MAX_NAME_CHARS)
    if ref.pod_name is not None:
        checked_text(ref.pod_name, "pod name", max_chars=MAX_NAME_CHARS)


def desired_step(
    pod: PodView,
    disposition: Disposition,
    options: ReconcileOptions,
    *,
    taskresult: JSON | None = None,
    node: JSON | None = None,
) -> DesiredStep:
    """The records one pod's step should have; raises PodError for bad input.

    `taskresult` and `node` are the step's WorkflowTaskResult and Workflow
    `status.nodes` entry when the caller has them: the other output sources.
    """
    try:
        return _desired_step(pod, disposition, options, taskresult, node)
    except RecursionError:
        # Input the depth checks let through must still fail only this pod.
        raise PodError(Reason.MALFORMED_POD, "pod input nests too deep to read") from None


def _desired_step(
    pod: PodView,
    disposition: Disposition,
    options: ReconcileOptions,
    taskresult: JSON | None,
    node: JSON | None,
) -> DesiredStep:
    if pod.workflow_uid is None:
        raise PodError(
            Reason.NO_WORKFLOW_OWNER,
            "pod has no ownerReference to its Workflow, so its step key cannot be derived",
        )
    template = template_of(pod)
    ref = StepRef(pod.namespace, pod.workflow_name, pod.workflow_uid, pod.node_id(), pod.name)
    if disposition is Disposition.RECORD_CACHE_HIT:
        return step_from_parts(
            ref,
            template,
            pod.annotations,
            ExecutionState.CACHED,
            options,
            cache_hit=True,
            cached_execution_id=pod.labels.get(c.EXECUTION_ID_LABEL),
        )
    return step_from_parts(
        ref,
        template,
        pod.annotations,
        _POD_PHASE_STATE.get(pod.phase, ExecutionState.UNKNOWN),
        options,
        reported_outputs=lambda: reported_output_artifacts(pod, taskresult, node),
    )
