"""store/convert: the last line of defence refuses, before sending, what would abort or corrupt MLMD."""

from __future__ import annotations

import pytest
from ml_metadata.proto import metadata_store_pb2 as pb

from store.convert import UnstorableValueError, fill, from_value, to_value


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        (None, "no value set"),
        (float("nan"), "cannot store"),
        (float("inf"), "cannot store"),
        ("a\x00b", "NUL"),
        ("\ud800", "lone surrogate"),
        (2**63, "64-bit"),
        ([1], "not an int, float or str"),
    ],
)
def test_unstorable_values_are_refused_before_anything_is_sent(value: object, fragment: str) -> None:
    with pytest.raises(UnstorableValueError, match=fragment):
        to_value(value)  # type: ignore[arg-type]
    execution = pb.Execution()
    execution.custom_properties["kept"].string_value = "x"
    with pytest.raises(UnstorableValueError):
        fill(execution.custom_properties, {"ok": 1, "bad": value})  # type: ignore[dict-item]
    # Nothing half-filled: the map is as it was.
    assert dict(execution.custom_properties) == {"kept": pb.Value(string_value="x")}


def test_a_property_name_with_a_surrogate_is_refused() -> None:
    with pytest.raises(UnstorableValueError, match="lone surrogate"):
        fill(pb.Execution().custom_properties, {"\udfff": 1})


@pytest.mark.parametrize("value", [0, -(2**31), 2**40, 1.5, -0.0, "", "é\U0001f600\x01'"])
def test_storable_values_round_trip_through_the_proto(value: object) -> None:
    proto = to_value(value)  # type: ignore[arg-type]
    assert proto.WhichOneof("value") is not None
    assert from_value(proto) == value


JSON_INPUTS = [
    0,
    1,
    -(2**31),
    2**31 - 1,
    2**31,
    1_700_000_000_000,
    2**63,
    -(10**30),
    True,
    0.5,
    0.1,
    -2.25,
    1e-07,
    0.123456789,
    1e15,
    1e300,
    5e-324,
    -0.0,
    "x",
    "é\U0001f600\x01'\"\\%",
    {"a": [1, None]},
]


def test_every_value_the_gate_lets_through_round_trips_exactly_on_every_backend(store_url: str) -> None:
    from reconcile.values import property_value
    from store.connect import open_store

    store = open_store(store_url)
    type_id = store.put_execution_type(pb.ExecutionType(name="RoundTrip"))
    wanted = {f"p{i}": property_value(v, f"input {i}") for i, v in enumerate(JSON_INPUTS)}
    execution = pb.Execution(type_id=type_id)
    fill(execution.custom_properties, wanted)
    [execution_id] = store.put_executions([execution])
    [stored] = store.get_executions_by_id([execution_id])
    got = {k: from_value(v) for k, v in stored.custom_properties.items()}
    assert got == wanted
    assert {k: type(v) for k, v in got.items()} == {k: type(v) for k, v in wanted.items()}
