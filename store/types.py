"""MLMD types: created once with upstream's schema (docs/kfp-contract.md §1), then cached by name."""

from __future__ import annotations

from ml_metadata import errors
from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2 as pb

from reconcile import conventions as c


class TypeRegistry:
    """Type name -> id for the context, execution and artifact types the reconciler uses.

    An existing type is reused by name without checks, as the upstream writer
    does (docs/kfp-contract.md §1 Phase A.2); a missing one is created with upstream's
    properties and no version. A concurrent creator is tolerated.
    """

    def __init__(self, store: metadata_store.MetadataStore) -> None:
        self._store = store
        self._ids: dict[tuple[str, str], int] = {}

    def context_type_id(self, name: str = c.RUN_CONTEXT_TYPE) -> int:
        props = dict.fromkeys(c.RUN_CONTEXT_PROPERTIES, pb.STRING)
        return self._ensure("context", name, pb.ContextType(name=name, properties=props))

    def execution_type_id(self, name: str) -> int:
        props = dict.fromkeys(c.EXECUTION_PROPERTIES, pb.STRING)
        return self._ensure("execution", name, pb.ExecutionType(name=name, properties=props))

    def artifact_type_id(self, name: str) -> int:
        # No declared properties since KFP PR #4004: values go in custom properties.
        return self._ensure("artifact", name, pb.ArtifactType(name=name))

    def forget(self) -> None:
        """Drop the cache (after MLMD was restored from a backup, ids may differ)."""
        self._ids.clear()

    def _ensure(
        self, kind: str, name: str, proto: pb.ContextType | pb.ExecutionType | pb.ArtifactType
    ) -> int:
        cached = self._ids.get((kind, name))
        if cached is not None:
            return cached
        get = getattr(self._store, f"get_{kind}_type")
        put = getattr(self._store, f"put_{kind}_type")
        try:
            type_id = get(name).id
        except errors.NotFoundError:
            try:
                type_id = put(proto)
            except errors.AlreadyExistsError:
                type_id = get(name).id
        self._ids[(kind, name)] = type_id
        return type_id
