"""Plain typed records: what MLMD should hold (desired) and what it holds (stored).

The pure layer never sees an MLMD proto; `store/` converts at the boundary.
Property values are `str | int | float | None` (None = an empty Value),
mirroring the upstream writer's conversion (docs/kfp-contract.md §1 Phase A.3).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

PropertyValue = str | int | float | None
Properties = dict[str, PropertyValue]


class ExecutionState(IntEnum):
    """MLMD's Execution.State numbers."""

    UNKNOWN = 0
    NEW = 1
    RUNNING = 2
    COMPLETE = 3
    FAILED = 4
    CACHED = 5
    CANCELED = 6


class EventKind(IntEnum):
    """MLMD's Event.Type numbers used here."""

    INPUT = 3
    OUTPUT = 4


@dataclass(frozen=True)
class StepRef:
    """Which step a set of records describes, and the name of the pod that runs or ran it."""

    namespace: str
    workflow_name: str
    workflow_uid: str
    node_id: str
    pod_name: str | None

    def __str__(self) -> str:
        return f"{self.namespace}/{self.pod_name or self.node_id}"


@dataclass(frozen=True)
class DesiredContext:
    """The run context of one workflow (type KfpRun, named after the workflow)."""

    key: str
    name: str
    properties: Properties


@dataclass(frozen=True)
class DesiredExecution:
    """One step's execution."""

    key: str
    type_name: str
    properties: Properties
    custom_properties: Properties
    state: ExecutionState


@dataclass(frozen=True)
class DesiredInput:
    """An INPUT event to the upstream artifact with this URI, under path key `name`."""

    name: str
    uri: str


@dataclass(frozen=True)
class DesiredArtifact:
    """One output artifact with its OUTPUT event (path key `name`) and attribution."""

    key: str
    name: str
    type_name: str
    uri: str
    custom_properties: Properties


@dataclass(frozen=True)
class DesiredStep:
    """Everything one step should have in MLMD.

    `outputs` is None while the step's outputs are not yet known (it has not
    finished, or no source has reported them); an empty tuple means it
    finished with no artifacts.
    """

    ref: StepRef
    context: DesiredContext
    execution: DesiredExecution
    inputs: tuple[DesiredInput, ...]
    outputs: tuple[DesiredArtifact, ...] | None
    # Problems that lost a detail but not the record (reported, not fatal).
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class PodMetadata:
    """The labels and annotations of ours that a pod carries (or should carry)."""

    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)


# --- what MLMD holds -----------------------------------------------------


@dataclass(frozen=True)
class StoredContext:
    id: int
    external_id: str | None
    name: str
    type_name: str
    properties: Properties


@dataclass(frozen=True)
class StoredExecution:
    id: int
    external_id: str | None
    type_name: str
    properties: Properties
    custom_properties: Properties
    state: ExecutionState
    name: str | None = None  # our key on MLMD without external_id (reconcile/keys.py)


@dataclass(frozen=True)
class StoredArtifact:
    id: int
    external_id: str | None
    type_name: str
    uri: str
    custom_properties: Properties
    name: str | None = None  # our key on MLMD without external_id (reconcile/keys.py)
    # Declared properties: none on today's artifact types, but types made before KFP PR
    # #4004 declare some, and an update must carry them or MLMD deletes them.
    properties: Properties = field(default_factory=dict)


@dataclass(frozen=True)
class StoredEvent:
    execution_id: int
    artifact_id: int
    kind: int  # MLMD Event.Type
    path_key: str | None
