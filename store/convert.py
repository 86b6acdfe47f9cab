"""MLMD protos <-> the pure layer's plain records (the only place that knows both)."""

from __future__ import annotations

from collections.abc import Mapping

from ml_metadata.proto import metadata_store_pb2 as pb

from reconcile.records import (
    ExecutionState,
    Properties,
    PropertyValue,
    StoredArtifact,
    StoredContext,
    StoredEvent,
    StoredExecution,
)
from reconcile.values import text_problem, value_problem


class UnstorableValueError(ValueError):
    """A property value that must never reach MLMD (raised before anything is sent)."""


def to_value(value: PropertyValue, name: str = "value") -> pb.Value:
    """int -> int_value, float -> double_value, str -> string_value.

    Raises UnstorableValueError for anything reconcile.values refuses: above all None,
    which would be a Value with no field set -- MLMD's C++ core aborts the whole process
    on one. The pure layer never produces these; this is the last line of defence.
    """
    problem = value_problem(value)
    if problem is not None:
        raise UnstorableValueError(f"property {name!r} {problem}")
    if isinstance(value, int):
        return pb.Value(int_value=value)
    if isinstance(value, float):
        return pb.Value(double_value=value)
    return pb.Value(string_value=value)


def from_value(value: pb.Value) -> PropertyValue:
    """The plain value of an MLMD Value (None when no field is set)."""
    which = value.WhichOneof("value")
    if which == "int_value":
        return value.int_value
    if which == "double_value":
        return value.double_value
    if which == "string_value":
        return value.string_value
    if which == "bool_value":
        return int(value.bool_value)
    if which is None:
        return None
    return str(getattr(value, which))


def fill(target: Mapping[str, pb.Value], values: Properties) -> None:
    """Copy plain values into a proto map field; UnstorableValueError for one MLMD cannot hold.

    Every value is converted before the map is touched, so a refused value leaves it as it was.
    """
    converted = {}
    for key, value in values.items():
        problem = text_problem(key) if isinstance(key, str) else "is not a string"
        if problem is not None:
            raise UnstorableValueError(f"property name {key!r} {problem}")
        converted[key] = to_value(value, key)
    for key, proto in converted.items():
        target[key].CopyFrom(proto)  # type: ignore[index]


def _plain(values: Mapping[str, pb.Value]) -> Properties:
    return {k: from_value(v) for k, v in values.items()}


def stored_context(proto: pb.Context) -> StoredContext:
    return StoredContext(
        id=proto.id,
        external_id=proto.external_id or None,
        name=proto.name,
        type_name=proto.type,
        properties=_plain(proto.properties),
    )


def stored_execution(proto: pb.Execution, type_names: Mapping[int, str] | None = None) -> StoredExecution:
    """`type_names` (type id -> name) for servers that do not fill in `type` (before MLMD 1.2)."""
    return StoredExecution(
        id=proto.id,
        external_id=proto.external_id or None,
        type_name=proto.type or (type_names or {}).get(proto.type_id, ""),
        properties=_plain(proto.properties),
        custom_properties=_plain(proto.custom_properties),
        state=ExecutionState(proto.last_known_state),
        name=proto.name or None,
    )


def stored_artifact(proto: pb.Artifact, type_names: Mapping[int, str] | None = None) -> StoredArtifact:
    """`type_names` (type id -> name) for servers that do not fill in `type` (before MLMD 1.2)."""
    return StoredArtifact(
        id=proto.id,
        external_id=proto.external_id or None,
        type_name=proto.type or (type_names or {}).get(proto.type_id, ""),
        uri=proto.uri,
        custom_properties=_plain(proto.custom_properties),
        name=proto.name or None,
        properties=_plain(proto.properties),
    )


def stored_event(proto: pb.Event) -> StoredEvent:
    steps = proto.path.steps
    key = steps[0].key if steps and steps[0].HasField("key") else None
    return StoredEvent(proto.execution_id, proto.artifact_id, proto.type, key)
