"""Names KFP v1 and Argo agree on (docs/kfp-contract.md, docs/argo-anatomy.md).

Every label, annotation and MLMD type name the reconciler reads or writes is
spelled here once, so the rest of the package reads as a specification.
"""

from __future__ import annotations

# --- Argo ---------------------------------------------------------------
ARGO_WORKFLOW_LABEL = "workflows.argoproj.io/workflow"
ARGO_COMPLETED_LABEL = "workflows.argoproj.io/completed"
ARGO_NODE_ID_ANNOTATION = "workflows.argoproj.io/node-id"
ARGO_NODE_NAME_ANNOTATION = "workflows.argoproj.io/node-name"
ARGO_TEMPLATE_ANNOTATION = "workflows.argoproj.io/template"  # Argo <= 3.1
ARGO_OUTPUTS_ANNOTATION = "workflows.argoproj.io/outputs"
ARGO_TEMPLATE_ENV = "ARGO_TEMPLATE"  # Argo >= 3.2
ARGO_TEMPLATE_OFFLOADED = "offloaded"  # Argo >= 3.6, template in a ConfigMap
ARGO_REPORT_OUTPUTS_COMPLETED_LABEL = "workflows.argoproj.io/report-outputs-completed"

# --- KFP pod labels and annotations ------------------------------------
KFP = "pipelines.kubeflow.org/"
COMPONENT_SPEC_ANNOTATION = KFP + "component_spec"
PARAMETER_ARGUMENTS_ANNOTATION = KFP + "arguments.parameters"
SDK_TYPE_LABEL = KFP + "pipeline-sdk-type"
V2_COMPONENT_ANNOTATION = KFP + "v2_component"
REUSED_FROM_CACHE_LABEL = KFP + "reused_from_cache"
EXECUTION_ID_LABEL = KFP + "metadata_execution_id"
CONTEXT_ID_LABEL = KFP + "metadata_context_id"
METADATA_WRITTEN_LABEL = KFP + "metadata_written"
INPUT_ARTIFACT_IDS_ANNOTATION = KFP + "metadata_input_artifact_ids"
OUTPUT_ARTIFACT_IDS_ANNOTATION = KFP + "metadata_output_artifact_ids"

# The labels and annotations this project owns on a pod; patches touch only these.
OWNED_LABELS = (EXECUTION_ID_LABEL, CONTEXT_ID_LABEL, METADATA_WRITTEN_LABEL)
OWNED_ANNOTATIONS = (INPUT_ARTIFACT_IDS_ANNOTATION, OUTPUT_ARTIFACT_IDS_ANNOTATION)

TFX_ENTRYPOINT_SUFFIX = "tfx/orchestration/kubeflow/container_entrypoint.py"

# --- MLMD types and property names (docs/kfp-contract.md §1, §5) -------
RUN_CONTEXT_TYPE = "KfpRun"
EXECUTION_TYPE_PREFIX = "components."
NO_TYPE = "NoType"

RUN_CONTEXT_PROPERTIES = ("pipeline_name", "run_id")
EXECUTION_PROPERTIES = ("pipeline_name", "run_id", "component_id")

INPUT_PATH_PREFIX = "/tmp/inputs/"
INPUT_PATH_SUFFIX = "/data"

# MLMD keeps external_id in a VARCHAR(255) column.
MAX_EXTERNAL_ID_LENGTH = 255
# Largest string value written to MLMD. Kubernetes caps all of an object's
# annotations together at 256 KiB, so a larger value cannot come from a real
# pod; refusing it up front also keeps MySQL below max_allowed_packet.
MAX_STRING_VALUE_BYTES = 256 * 1024
