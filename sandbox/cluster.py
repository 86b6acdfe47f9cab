"""The in-process interface between the sandbox's parts.

The API emulator (``sandbox.apiserver``) keeps every object in an
``ObjectStore`` (``sandbox.objectstore``) that implements :class:`Cluster`;
the Argo/KFP simulator (``sandbox.simulator``) drives a cluster only through
this protocol, so it runs the same against the HTTP emulator's store and in
plain unit tests.

Resources are named by their plural, lower-case REST name. Objects are plain
JSON-shaped dicts exactly as the Kubernetes API returns them.
"""

from __future__ import annotations

from typing import Any, Protocol

# plural name -> (group, version, kind, namespaced)
RESOURCES: dict[str, tuple[str, str, str, bool]] = {
    "pods": ("", "v1", "Pod", True),
    "events": ("", "v1", "Event", True),
    "namespaces": ("", "v1", "Namespace", False),
    "configmaps": ("", "v1", "ConfigMap", True),
    "leases": ("coordination.k8s.io", "v1", "Lease", True),
    "workflows": ("argoproj.io", "v1alpha1", "Workflow", True),
    "workflowtaskresults": ("argoproj.io", "v1alpha1", "WorkflowTaskResult", True),
}


class ClusterError(Exception):
    """A failed cluster operation, carrying the HTTP status the API would return."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason  # NotFound, AlreadyExists, Conflict, Invalid, ...
        self.message = message


class Cluster(Protocol):
    """What the simulator needs from a cluster: CRUD over JSON objects."""

    def create(self, resource: str, obj: dict[str, Any]) -> dict[str, Any]:
        """Store a new object (namespace from ``obj.metadata.namespace``).

        Assigns ``uid``, ``resourceVersion`` and ``creationTimestamp``; honours
        ``metadata.generateName``. Raises ClusterError(409, AlreadyExists).
        """
        ...

    def get(self, resource: str, namespace: str | None, name: str) -> dict[str, Any]:
        """Return a copy of one object; ClusterError(404, NotFound) if absent."""
        ...

    def list(
        self,
        resource: str,
        namespace: str | None = None,
        label_selector: str | None = None,
    ) -> list[dict[str, Any]]:
        """Return copies of the matching objects (all namespaces when None)."""
        ...

    def patch(
        self,
        resource: str,
        namespace: str | None,
        name: str,
        patch: Any,
        patch_type: str = "merge",
    ) -> dict[str, Any]:
        """Apply a ``merge`` (RFC 7386), ``strategic`` or ``json`` (RFC 6902) patch."""
        ...

    def replace(self, resource: str, obj: dict[str, Any]) -> dict[str, Any]:
        """Replace an object; 409 Conflict if ``metadata.resourceVersion`` is stale."""
        ...

    def delete(self, resource: str, namespace: str | None, name: str) -> dict[str, Any]:
        """Delete an object and return its last state; 404 if absent."""
        ...
