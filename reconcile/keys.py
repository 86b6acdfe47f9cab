"""Identity keys: the deterministic key of every record the reconciler writes.

The formats are a stored contract (docs/identity-keys.md); never change them
without a migration. An execution's key is computable from a pod and from the
Workflow's `status.nodes` alike: both know the namespace, the Workflow's uid
and the Argo node id.

Where MLMD keeps the key depends on the server (`KeyPlacement`): in `external_id`
from MLMD 1.11 on, in the execution's or artifact's `name` before (a run context
is found by its name on every version).
"""

from __future__ import annotations

import hashlib
from enum import StrEnum

from reconcile.conventions import MAX_EXTERNAL_ID_LENGTH

PREFIX = "kfp-v1"


class KeyPlacement(StrEnum):
    """The MLMD field that carries an execution's or artifact's key."""

    # MLMD >= 1.11: `external_id`, unique per record kind, settable on adoption.
    EXTERNAL_ID = "external_id"
    # Older servers (KFP 1.7, 1.8): `name`, unique per type, set once at creation.
    NAME = "name"


def _bounded(key: str) -> str:
    # A key that would overflow MLMD's 255-character column (external_id and name alike)
    # keeps a readable head and ends in a digest of the whole key, so it stays unique.
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


def workflow_key_prefix(namespace: str, workflow_uid: str) -> str:
    """What the keys of one Workflow object's executions and outputs start with.

    Short enough never to be cut by the length bound: a namespace has at most 63
    characters and a uid 36.
    """
    return f"{PREFIX}/step/{namespace}/{workflow_uid}/"
