"""The metadata store as the rest of the project sees it: one MLMD, and every call made to it.

`MetadataStore` is the seam between MLMD and everything outside store/: a pass reads
actual state and applies workflow plans through it, the controller reads its witness,
`verify` its drift. MLMD's errors come out as store.errors types, so no other package
imports ml_metadata.

It opens its MLMD client on first use and again after `drop()`: the controller drops
it after an MLMD error (an embedded MySQL handle may be left inside a transaction, and
a restore may have given the types other ids).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence

from ml_metadata.metadata_store import metadata_store

from reconcile.plan import ActualState, WorkflowPlan
from reconcile.records import DesiredStep, StoredExecution
from store.actual import read_actual
from store.apply import ApplyResult, apply_workflow_plans
from store.errors import reading
from store.executions import execution_keys, executions_keyed_under
from store.types import TypeRegistry
from store.witness import Witness, read_witness

MlmdClient = metadata_store.MetadataStore  # embedded (SQLite, MySQL) or gRPC: store/connect.py
Opener = Callable[[], MlmdClient]


class MetadataStore:
    """One MLMD: batched reads, workflow-plan writes and the controller's and `verify`'s probes."""

    def __init__(self, opener: Opener) -> None:
        self._opener = opener
        self._client: MlmdClient | None = None
        self._types: TypeRegistry | None = None

    @classmethod
    def over(cls, client: MlmdClient) -> MetadataStore:
        """A store over a client that is already open (`drop` then keeps using it)."""
        return cls(lambda: client)

    # --- lifecycle -----------------------------------------------------------
    def open(self) -> MlmdClient:
        """The client, opened now if it is not (StoreConfigError, StoreUnavailableError)."""
        if self._client is None:
            self._client = self._opener()
            self._types = TypeRegistry(self._client)
        return self._client

    def drop(self) -> None:
        """Let go of the client and its type ids; the next call opens it again."""
        self._client = None
        self._types = None

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
        """Everything planning these steps needs, in batched reads."""
        with reading():
            return read_actual(self.open(), steps)

    def apply(self, plans: Sequence[WorkflowPlan], created_ids: dict[str, int] | None = None) -> ApplyResult:
        """Write the workflow plans, one transaction per workflow chunk; failures are per step.

        `created_ids` (artifact key -> id) carries outputs written by earlier calls of one pass.
        """
        client, types = self._typed()
        return apply_workflow_plans(client, types, plans, created_ids)

    # --- probes --------------------------------------------------------------
    def read_witness(self) -> Witness:
        """MLMD's newest records: they differ when anyone wrote since, or a restore happened."""
        with reading():
            return read_witness(self.open())

    def execution_keys(self, ids: Collection[int]) -> dict[int, str | None]:
        """Execution id -> its external_id, for those of `ids` that exist."""
        with reading():
            return execution_keys(self.open(), ids)

    def executions_keyed_under(self, prefix: str) -> list[StoredExecution]:
        """Every execution whose external_id starts with `prefix`."""
        with reading():
            return executions_keyed_under(self.open(), prefix)
