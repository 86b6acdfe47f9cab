"""The one error type of the pure layer: a problem with one pod's input."""

from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    """Why a pod could not be reconciled; the `reason` label of the error metric."""

    MALFORMED_POD = "malformed_pod"
    MALFORMED_ANNOTATION = "malformed_annotation"
    MALFORMED_TEMPLATE = "malformed_template"
    TEMPLATE_MISSING = "template_missing"
    TEMPLATE_OFFLOADED = "template_offloaded"
    NO_WORKFLOW_OWNER = "no_workflow_owner"
    UNKNOWN_ARTIFACT_KIND = "unknown_artifact_kind"
    NO_ARTIFACT_REPOSITORY = "no_artifact_repository"
    VALUE_TOO_LARGE = "value_too_large"
    # A string, name or number MLMD or its SQL backends cannot hold unchanged (docs/values.md).
    INVALID_VALUE = "invalid_value"
    # Several pods claim one step (node) of one workflow: none of them is recorded.
    DUPLICATE_STEP = "duplicate_step"
    MLMD_CONFLICT = "mlmd_conflict"
    MLMD_WRITE = "mlmd_write"


class PodError(Exception):
    """A pod whose input cannot be turned into records; it is reported and skipped."""

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message

    def __str__(self) -> str:
        return f"{self.reason.value}: {self.message}"
