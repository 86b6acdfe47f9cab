"""What the controller and its passes call on Kubernetes: the seam `KubeClient` fills.

Everything is raw JSON; every call retries on its own and raises the errors of
controller/kube/errors.py.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from typing import Any, Protocol

from controller.kube.lists import PodPages, RawList, Transform
from controller.kube.transport import JSON
from controller.kube.watch import WatchEvent


class KubeAccess(Protocol):
    """Reads of pods and Argo resources, pod patches, Events and the pod watch."""

    def list_pods(
        self, namespaces: Sequence[str] | None, label_selector: str = ..., transform: Transform | None = None
    ) -> RawList:
        """Pods with the Argo workflow label (or ``label_selector``), all in one list."""
        ...

    def pod_pages(
        self, namespaces: Sequence[str] | None, label_selector: str = ..., transform: Transform | None = None
    ) -> PodPages:
        """The same pods, a page at a time as each arrives."""
        ...

    def pod_metadata_pages(
        self, namespaces: Sequence[str] | None, label_selector: str = ...
    ) -> PodPages:
        """The same pods as metadata only (``PartialObjectMetadataList``), a page at a time."""
        ...

    def list_workflow_metadata(self, namespaces: Sequence[str] | None) -> list[JSON]:
        """Every Argo Workflow's metadata only; [] when their CRD is absent."""
        ...

    def list_taskresult_metadata(self, namespaces: Sequence[str] | None) -> list[JSON]:
        """Every WorkflowTaskResult's metadata only; [] when their CRD is absent."""
        ...

    def list_workflows(
        self,
        namespaces: Sequence[str] | None,
        label_selector: str | None = None,
        transform: Transform | None = None,
    ) -> list[JSON]:
        """Argo Workflows; [] when their CRD is absent."""
        ...

    def list_taskresults(
        self, namespaces: Sequence[str] | None, label_selector: str | None = None
    ) -> list[JSON]:
        """Argo WorkflowTaskResults; [] when their CRD is absent."""
        ...

    def get_workflow(self, namespace: str, name: str) -> JSON | None:
        """One Argo Workflow, or None when it does not exist."""
        ...

    def namespace_exists(self, name: str) -> bool:
        """Whether a namespace exists."""
        ...

    def patch_pod_metadata(self, namespace: str, name: str, patch: dict[str, Any]) -> bool:
        """Merge-patch a pod's labels and annotations; False when the pod is gone."""
        ...

    def emit_pod_event(self, pod: JSON, reason: str, message: str, type: str = "Warning") -> bool:
        """Record an Event on a pod (rate-limited, best effort)."""
        ...

    def watch_pods(
        self,
        namespace: str | None,
        resource_version: str,
        *,
        timeout_s: int,
        stop: threading.Event,
        label_selector: str = ...,
    ) -> Iterator[WatchEvent]:
        """Pod changes from ``resource_version`` on, until the server ends the stream or ``stop``."""
        ...
