"""Argo Workflows version profiles (see docs/argo-anatomy.md §0).

Each profile is a bundle of independent switches; ``ArgoProfile.get("3.5",
outputs="annotation")`` gives 3.5 with the outputs-annotation fallback (what KFP
single-user RBAC produces on Argo 3.3-3.5).
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any, Literal

OutputsChannel = Literal["annotation", "taskresult"]
TemplateEnv = Literal["none", "all", "init"]


@dataclass(frozen=True)
class ArgoProfile:
    """The version-dependent facts the simulator follows.

    Attributes:
        version: the Argo minor version this profile models ("3.1", "3.3", "3.5", "3.6").
        executor: "docker" (3.1, KFP 1.8.22) or "emissary".
        executor_image: image of the ``init``/``wait`` containers.
        pod_name_format: "v1" (pod name = node id) or "v2" (``<wf>-<tmpl>-<hash>``).
        stamp_pod_name_format: stamp ``workflows.argoproj.io/pod-name-format`` on the
            Workflow (>= 3.4).
        template_annotation: write the ``workflows.argoproj.io/template`` annotation (<= 3.1).
        template_env: which containers carry ``ARGO_TEMPLATE``: none / all / init only.
        template_inputs_artifacts_only: cut ``inputs`` down to ``{artifacts}`` (>= 3.6).
        offload_template_bytes: ``ARGO_TEMPLATE`` values larger than this go to a
            ConfigMap named after the pod (>= 3.6); None disables.
        node_id_annotation: write ``workflows.argoproj.io/node-id`` (>= 3.2).
        default_container_annotation: ``kubectl.kubernetes.io/default-container`` (>= 3.3).
        outputs: "annotation" (pod annotation ``workflows.argoproj.io/outputs``) or
            "taskresult" (WorkflowTaskResult).
        taskresult_owner: "Workflow" or "Pod" (3.3.2-3.5.1 own results by the Pod).
        taskresult_owner_kind_pods: write the Pod owner as ``kind: "pods"`` (3.3.2-3.4.7).
        report_outputs_completed: label ``report-outputs-completed`` on results and, in
            annotation mode, the pod annotation of the same name (>= 3.5.2).
        taskresult_created_early: the result is created empty when ``wait`` starts (>= 3.5.3).
        workflow_uid_env: ``ARGO_WORKFLOW_UID`` on init/wait (>= 3.5.2).
        runtime_executor_env: ``ARGO_CONTAINER_RUNTIME_EXECUTOR`` on init/wait (<= 3.3).
        log_format_flag: executor commands carry ``--log-format text`` (3.5+).
        empty_template_pod_name: v2 pod name is just ``<wf>-<hash>`` for an empty
            template name (>= 3.6.0).
        node_flag: nodes carry ``nodeFlag`` (>= 3.6).
        task_results_completion_status: ``status.taskResultsCompletionStatus`` (>= 3.5.2).
    """

    version: str
    executor: Literal["docker", "emissary"]
    executor_image: str
    pod_name_format: Literal["v1", "v2"]
    stamp_pod_name_format: bool
    template_annotation: bool
    template_env: TemplateEnv
    template_inputs_artifacts_only: bool
    offload_template_bytes: int | None
    node_id_annotation: bool
    default_container_annotation: bool
    outputs: OutputsChannel
    taskresult_owner: Literal["Workflow", "Pod"]
    taskresult_owner_kind_pods: bool
    report_outputs_completed: bool
    taskresult_created_early: bool
    workflow_uid_env: bool
    runtime_executor_env: bool
    log_format_flag: bool
    empty_template_pod_name: bool
    node_flag: bool
    task_results_completion_status: bool

    @classmethod
    def get(cls, version: str | ArgoProfile = "3.5", **overrides: Any) -> ArgoProfile:
        """The profile for ``version`` ("3.1", "3.3", "3.5", "3.6"), with switches overridden."""
        base = version if isinstance(version, ArgoProfile) else _PROFILES.get(str(version))
        if base is None:
            raise ValueError(f"unknown Argo profile {version!r}; known: {sorted(_PROFILES)}")
        if not overrides:
            return base
        known = {f.name for f in fields(cls)}
        bad = set(overrides) - known
        if bad:
            raise ValueError(f"unknown profile switch(es): {sorted(bad)}")
        return replace(base, **overrides)

    @property
    def uses_taskresults(self) -> bool:
        """Whether outputs travel through WorkflowTaskResults."""
        return self.outputs == "taskresult"

    def with_(self, **overrides: Any) -> ArgoProfile:
        """A copy with some switches changed."""
        return ArgoProfile.get(self, **overrides)


_PROFILES: dict[str, ArgoProfile] = {
    # KFP 1.8.22 manifests: Argo 3.1.6 with the docker executor
    "3.1": ArgoProfile(
        version="3.1",
        executor="docker",
        executor_image="gcr.io/ml-pipeline/argoexec:v3.1.6-patch-license-compliance",
        pod_name_format="v1",
        stamp_pod_name_format=False,
        template_annotation=True,
        template_env="none",
        template_inputs_artifacts_only=False,
        offload_template_bytes=None,
        node_id_annotation=False,
        default_container_annotation=False,
        outputs="annotation",
        taskresult_owner="Workflow",
        taskresult_owner_kind_pods=False,
        report_outputs_completed=False,
        taskresult_created_early=False,
        workflow_uid_env=False,
        runtime_executor_env=True,
        log_format_flag=False,
        empty_template_pod_name=False,
        node_flag=False,
        task_results_completion_status=False,
    ),
    # KFP 1.8.5 / 2.0-2.1: Argo 3.3.x, emissary, single-user RBAC forbids task results
    "3.3": ArgoProfile(
        version="3.3",
        executor="emissary",
        executor_image="gcr.io/ml-pipeline/argoexec:v3.3.10-license-compliance",
        pod_name_format="v1",
        stamp_pod_name_format=False,
        template_annotation=False,
        template_env="all",
        template_inputs_artifacts_only=False,
        offload_template_bytes=None,
        node_id_annotation=True,
        default_container_annotation=True,
        outputs="annotation",
        taskresult_owner="Pod",
        taskresult_owner_kind_pods=True,
        report_outputs_completed=False,
        taskresult_created_early=False,
        workflow_uid_env=False,
        runtime_executor_env=True,
        log_format_flag=False,
        empty_template_pod_name=False,
        node_flag=False,
        task_results_completion_status=False,
    ),
    # KFP 2.5: Argo 3.5.14 (>= 3.5.3 behaviour), task results allowed by RBAC
    "3.5": ArgoProfile(
        version="3.5",
        executor="emissary",
        executor_image="quay.io/argoproj/argoexec:v3.5.14",
        pod_name_format="v2",
        stamp_pod_name_format=True,
        template_annotation=False,
        template_env="all",
        template_inputs_artifacts_only=False,
        offload_template_bytes=None,
        node_id_annotation=True,
        default_container_annotation=True,
        outputs="taskresult",
        taskresult_owner="Workflow",
        taskresult_owner_kind_pods=False,
        report_outputs_completed=True,
        taskresult_created_early=True,
        workflow_uid_env=True,
        runtime_executor_env=False,
        log_format_flag=True,
        empty_template_pod_name=False,
        node_flag=False,
        task_results_completion_status=True,
    ),
    # KFP 2.14: Argo 3.6.7; the outputs annotation fallback is gone
    "3.6": ArgoProfile(
        version="3.6",
        executor="emissary",
        executor_image="quay.io/argoproj/argoexec:v3.6.7",
        pod_name_format="v2",
        stamp_pod_name_format=True,
        template_annotation=False,
        template_env="init",
        template_inputs_artifacts_only=True,
        offload_template_bytes=131072,
        node_id_annotation=True,
        default_container_annotation=True,
        outputs="taskresult",
        taskresult_owner="Workflow",
        taskresult_owner_kind_pods=False,
        report_outputs_completed=True,
        taskresult_created_early=True,
        workflow_uid_env=True,
        runtime_executor_env=False,
        log_format_flag=True,
        empty_template_pod_name=True,
        node_flag=True,
        task_results_completion_status=True,
    ),
}

PROFILE_VERSIONS: tuple[str, ...] = tuple(_PROFILES)
