"""The knobs of the pure layer, filled from the controller's Settings."""

from __future__ import annotations

from dataclasses import dataclass, field

from reconcile.uris import ArtifactRepository


@dataclass(frozen=True)
class ReconcileOptions:
    """How pods become records."""

    repository: ArtifactRepository = field(default_factory=ArtifactRepository)
    # Record KFP cache hits as CACHED executions linking the original (off like upstream).
    record_cache_hits: bool = False
    # Record Argo pods that carry no KFP markers, as the upstream writer does.
    record_non_kfp_pods: bool = True
    # Workflows written per MLMD write (store/apply.py's batches) where the server has
    # put_lineage_subgraph; 1 writes each workflow in a transaction of its own.
    write_batch_workflows: int = 50
