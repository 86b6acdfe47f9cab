"""Identity keys: the MLMD `external_id` of every record the reconciler writes.

The formats are a stored contract (docs/identity-keys.md); never change them
without a migration. An execution's key is computable from a pod and from the
Workflow's `status.nodes` alike: both know the namespace, the Workflow's uid
and the Argo node id.
"""

from __future__ import annotations

import hashlib

from reconcile.conventions import MAX_EXTERNAL_ID_LENGTH

PREFIX = "kfp-v1"


def _bounded(key: str) -> str:
    # A key that would overflow MLMD's external_id column keeps a readable
    # head and ends in a digest of the whole key, so it stays unique.
    if len(key) <= MAX_EXTERNAL_ID_LENGTH:
        return key
    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:40]
    return f"{key[: MAX_EXTERNAL_ID_LENGTH - 42]}~{digest}"


def context_key(workflow_name: str) -> str:
    """Run context: one per workflow *name*, as KFP's UI looks the context up by name."""
    return _bounded(f"{PREFIX}/run/{workflow_name}")


def execution_key(namespace: str, workflow_uid: str, node_id: str) -> str:
    """Execution: one per Argo node (step attempt) of one Workflow object."""
    return _bounded(f"{PREFIX}/step/{namespace}/{workflow_uid}/{node_id}")


def output_artifact_key(namespace: str, workflow_uid: str, node_id: str, output_name: str) -> str:
    """Output artifact: one per named output of one step."""
    return _bounded(f"{PREFIX}/step/{namespace}/{workflow_uid}/{node_id}/out/{output_name}")
