"""Which optional MLMD APIs a store has, found by calls that change nothing.

MLMD has no version handshake, and an older server ignores a field it does not know (its
protos are proto2): a record written with ``external_id`` to a 1.5.0 server is stored without
it, and a ``filter_query`` sent to 1.0.0 returns the list unfiltered. So a successful write
proves nothing; :func:`probe_capabilities` asks instead:

* ``external_id`` -- ``GetContextsByExternalIds`` for a key no one uses: an answer (the key
  is not found) means the server has external ids (1.11.0 on); ``UNIMPLEMENTED`` means not.
* ``filter_query`` -- ``GetContexts`` of at most one context with a filter that does not
  parse: a server that reads filters refuses it (``INVALID_ARGUMENT``, 1.2.0 on); one that
  ignores the field answers normally.
* ``put_lineage_subgraph`` -- implied by external ids (1.11.0 > 1.8.0). Otherwise the RPC
  is called with one event edge pointing at an execution the request does not hold: a
  server with the RPC rejects that request before touching the database (``OUT_OF_RANGE``;
  the call is one transaction besides), a server without it answers ``UNIMPLEMENTED``.

The embedded library (1.16/1.17) has all three.

The capabilities decide how the reconciler reads and writes (:attr:`Capabilities.key_placement`):
with all three, keys in ``external_id``, reads by key and one ``put_lineage_subgraph`` per
workflow; without them (MLMD 1.0.0, 1.5.0), keys in the records' ``name``, reads run context by
run context and one ``put_execution`` per step (docs/identity-keys.md).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from ml_metadata import errors as mlmd_errors
from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2

from reconcile.keys import KeyPlacement
from store.errors import StoreUnavailableError

__all__ = ["ALL_CAPABILITIES", "Capabilities", "probe_capabilities"]

_UNUSED_EXTERNAL_ID = "kfp-metadata-reconciler:capability-probe"
_UNPARSABLE_FILTER = "kfp-metadata-reconciler capability probe ("


@dataclass(frozen=True)
class Capabilities:
    """The optional MLMD APIs a store has (True: present and honoured)."""

    external_ids: bool
    lineage_subgraph: bool
    filter_query: bool

    @property
    def key_placement(self) -> KeyPlacement:
        """Where records keep their keys: ``external_id`` only with all three APIs, else ``name``.

        Reads by key need ``filter_query`` besides (a run context by name, artifacts by URI), and
        the workflow-at-once writes ``put_lineage_subgraph``; every server with external ids
        (1.11.0 on) has both.
        """
        if self.external_ids and self.lineage_subgraph and self.filter_query:
            return KeyPlacement.EXTERNAL_ID
        return KeyPlacement.NAME

    def flags(self) -> dict[str, bool]:
        """``{"external_id": ..., "put_lineage_subgraph": ..., "filter_query": ...}`` (MLMD's names)."""
        fields = asdict(self)
        return {
            "external_id": fields["external_ids"],
            "put_lineage_subgraph": fields["lineage_subgraph"],
            "filter_query": fields["filter_query"],
        }

    def summary(self) -> str:
        """One line: ``MLMD capabilities: external_id=no put_lineage_subgraph=no filter_query=yes
        (keys in name, one put_execution per step)``."""
        flags = " ".join(f"{name}={'yes' if present else 'no'}" for name, present in self.flags().items())
        if self.key_placement is KeyPlacement.EXTERNAL_ID:
            mode = "keys in external_id, writes by put_lineage_subgraph"
        else:
            mode = "keys in name, one put_execution per step"
        return f"MLMD capabilities: {flags} ({mode})"

    def to_json(self) -> dict[str, bool | str]:
        """:meth:`flags` and ``"key_placement"``: ``"external_id"`` or ``"name"``."""
        return {**self.flags(), "key_placement": self.key_placement.value}


ALL_CAPABILITIES = Capabilities(external_ids=True, lineage_subgraph=True, filter_query=True)


def _answers(call: Callable[[], Any], *, present: tuple[type[Exception], ...], what: str) -> bool:
    """True if ``call`` succeeds or fails with one of ``present``; False if UNIMPLEMENTED."""
    try:
        call()
    except mlmd_errors.UnimplementedError:
        return False
    except present:
        return True
    except mlmd_errors.StatusError as exc:
        first_line = (str(exc).splitlines() or [""])[0]
        raise StoreUnavailableError(
            f"probing MLMD for {what} failed: {type(exc).__name__}: {first_line}"
        ) from None
    return True


def probe_external_ids(store: Any) -> bool:
    # 1.14 answers NOT_FOUND for an unknown key, 1.17 an empty list: both know the RPC.
    return _answers(
        lambda: store.get_contexts_by_external_ids([_UNUSED_EXTERNAL_ID]),
        present=(mlmd_errors.NotFoundError,),
        what="external_id",
    )


def probe_filter_query(store: Any) -> bool:
    options = metadata_store.ListOptions(limit=1, filter_query=_UNPARSABLE_FILTER)
    try:
        store.get_contexts(list_options=options)
    except mlmd_errors.InvalidArgumentError:
        return True  # it parsed the filter, and refused it
    except mlmd_errors.StatusError as exc:
        first_line = (str(exc).splitlines() or [""])[0]
        raise StoreUnavailableError(
            f"probing MLMD for filter_query failed: {type(exc).__name__}: {first_line}"
        ) from None
    return False  # the filter was ignored


def probe_lineage_subgraph(store: Any) -> bool:
    edge_to_nowhere = (0, 0, metadata_store_pb2.Event(type=metadata_store_pb2.Event.INPUT))
    return _answers(
        lambda: store.put_lineage_subgraph([], [], [], [edge_to_nowhere]),
        present=(mlmd_errors.OutOfRangeError, mlmd_errors.InvalidArgumentError),
        what="put_lineage_subgraph",
    )


def probe_capabilities(store: Any) -> Capabilities:
    """Probe ``store`` (an MLMD ``MetadataStore``, embedded or gRPC, or a ``LockedStore``).

    Two or three small calls; nothing is written. Raises :class:`StoreUnavailableError` (one
    line) if a probe fails for another reason, e.g. the server is unreachable.
    """
    external_ids = probe_external_ids(store)
    return Capabilities(
        external_ids=external_ids,
        lineage_subgraph=external_ids or probe_lineage_subgraph(store),
        filter_query=probe_filter_query(store),
    )
