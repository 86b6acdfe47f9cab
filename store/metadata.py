"""The metadata store as the rest of the project sees it: one MLMD, and every call made to it.

`MetadataStore` is the seam between MLMD and everything outside store/: a pass reads
actual state and applies workflow plans through it, the controller reads its witness,
`verify` its drift. MLMD's errors come out as store.errors types, so no other package
imports ml_metadata.

It opens its MLMD client on first use and again after `drop()`: the controller drops
it after an MLMD error (an embedded MySQL handle may be left inside a transaction, and
a restore may have given the types other ids). Each open probes the server's capabilities
(store/capabilities.py), and they decide the path every call takes: with external ids,
reads by key (store/actual.py) and batches of workflows, or one put_lineage_subgraph per
workflow (store/apply.py);
without (MLMD 1.0.0, 1.5.0), keys in names, reads run context by run context
(store/actual_by_context.py) and one put_execution per step (store/apply_steps.py).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence

from ml_metadata.metadata_store import metadata_store

from reconcile.keys import KeyPlacement
from reconcile.plan import ActualState, WorkflowPlan
from reconcile.records import DesiredStep, StoredExecution
from store.actual import read_actual
from store.actual_by_context import read_actual_by_context
from store.apply import ApplyResult, apply_workflow_plans
from store.apply_steps import apply_step_plans
from store.capabilities import Capabilities, probe_capabilities
from store.errors import reading
from store.executions import execution_keys, executions_keyed_under
from store.types import TypeRegistry
from store.witness import Witness, read_witness

MlmdClient = metadata_store.MetadataStore  # embedded (SQLite, MySQL) or gRPC: store/connect.py
Opener = Callable[[], MlmdClient]
# Called with the capabilities each time the store is opened (the controller logs them).
OnOpen = Callable[[Capabilities], None]


class MetadataStore:
    """One MLMD: batched reads, workflow-plan writes and the controller's and `verify`'s probes."""

    def __init__(self, opener: Opener, on_open: OnOpen | None = None) -> None:
        self._opener = opener
        self._on_open = on_open
        self._client: MlmdClient | None = None
        self._types: TypeRegistry | None = None
        self._capabilities: Capabilities | None = None

    @classmethod
    def over(cls, client: MlmdClient, on_open: OnOpen | None = None) -> MetadataStore:
        """A store over a client that is already open (`drop` then keeps using it)."""
        return cls(lambda: client, on_open)

    # --- lifecycle -----------------------------------------------------------
    def open(self) -> MlmdClient:
        """The client, opened and probed now if it is not (StoreConfigError, StoreUnavailableError)."""
        if self._client is None:
            client = self._opener()
            # Probed once per open: a restarted or replaced server may be another version.
            capabilities = probe_capabilities(client)
            self._client, self._capabilities = client, capabilities
            self._types = TypeRegistry(client)
            if self._on_open is not None:
                self._on_open(capabilities)
        return self._client

    def drop(self) -> None:
        """Let go of the client, its type ids and capabilities; the next call opens it again."""
        self._client = None
        self._types = None
        self._capabilities = None

    @property
    def capabilities(self) -> Capabilities:
        """What the MLMD server can do (opens the store if it is not open)."""
        self.open()
        assert self._capabilities is not None  # set together with the client
        return self._capabilities

    @property
    def placement(self) -> KeyPlacement:
        """Where this store's records keep their keys: external_id, or name."""
        return self.capabilities.key_placement

    def forget_types(self) -> None:
        """Read the type ids again on next use (a restore may have taken types or changed ids)."""
        if self._types is not None:
            self._types.forget()

    def _typed(self) -> tuple[MlmdClient, TypeRegistry]:
        client = self.open()
        assert self._types is not None  # set together with the client
        return client, self._types

    # --- what a pass does ----------------------------------------------------
    def read_actual(self, steps: Sequence[DesiredStep]) -> ActualState:
        """Everything planning these steps needs, in batched reads (by key, or by run context)."""
        with reading():
            client = self.open()
            if self.placement is KeyPlacement.EXTERNAL_ID:
                return read_actual(client, steps)
            return read_actual_by_context(client, steps)

    def apply(
        self,
        plans: Sequence[WorkflowPlan],
        created_ids: dict[str, int] | None = None,
        batch_workflows: int = 1,
    ) -> ApplyResult:
        """Write the workflow plans: up to `batch_workflows` workflows together in at most three
        transactions, or one transaction per workflow chunk (put_lineage_subgraph), or per step
        where the server has no put_lineage_subgraph; failures are per step.

        `created_ids` (artifact key -> id) carries outputs written by earlier calls of one pass.
        """
        client, types = self._typed()
        if self.placement is KeyPlacement.EXTERNAL_ID:
            return apply_workflow_plans(client, types, plans, created_ids, batch_workflows)
        return apply_step_plans(client, types, plans, created_ids)

    # --- probes --------------------------------------------------------------
    def read_witness(self) -> Witness:
        """MLMD's newest records: they differ when anyone wrote since, or a restore happened."""
        with reading():
            return read_witness(self.open())

    def execution_keys(self, ids: Collection[int]) -> dict[int, str | None]:
        """Execution id -> its key (external_id, or name), for those of `ids` that exist."""
        with reading():
            return execution_keys(self.open(), ids, self.placement)

    def executions_keyed_under(self, prefix: str) -> list[StoredExecution]:
        """Every execution whose key (external_id, or name) starts with `prefix`."""
        with reading():
            client = self.open()
            return executions_keyed_under(
                client, prefix, self.placement, filter_query=self.capabilities.filter_query
            )
