"""Writing our labels and annotations onto a pod: a JSON merge patch of metadata only."""

from __future__ import annotations

import logging
from typing import Any

from controller.kube.errors import KubeApiError
from controller.kube.transport import Transport

log = logging.getLogger(__name__)

MERGE_PATCH = "application/merge-patch+json"


def patch_pod_metadata(transport: Transport, namespace: str, name: str, patch: dict[str, Any]) -> bool:
    """JSON-merge-patch a pod's labels/annotations; False when the pod is gone (404).

    ``patch`` is ``{"metadata": {"labels": {...}, "annotations": {...}}}``; a ``None``
    value removes that key. Only those keys change.
    """
    metadata = patch.get("metadata")
    if (
        set(patch) != {"metadata"}
        or not isinstance(metadata, dict)
        or not set(metadata) <= {"labels", "annotations"}
    ):
        raise ValueError("a pod metadata patch may only hold metadata.labels and metadata.annotations")
    timeout = transport.request_timeout
    core = transport.core
    try:
        transport.retried(
            transport.drained(
                lambda: core.patch_namespaced_pod(
                    name,
                    namespace,
                    patch,
                    _content_type=MERGE_PATCH,
                    _preload_content=False,
                    _request_timeout=timeout,
                )
            ),
            f"patch pod {namespace}/{name}",
        )
    except KubeApiError as exc:
        if exc.status == 404:
            log.info("pod %s/%s is gone; patch skipped", namespace, name)
            return False
        raise
    return True
