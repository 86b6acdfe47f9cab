"""Accept-header negotiation in process: what each header asks for, and no header breaks it."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from sandbox.negotiation import AS_STORED, Representation, mismatch, negotiate


def test_what_headers_ask_for() -> None:
    meta = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"
    assert negotiate(None) == AS_STORED and negotiate("  ") == AS_STORED
    assert negotiate(meta) == Representation("PartialObjectMetadataList", "v1")
    assert negotiate(f" application/json ; q=0.3 , {meta.replace(';', ' ; ')} ") == Representation(
        "PartialObjectMetadataList", "v1")
    assert negotiate("application/json;as=Table;g=meta.k8s.io;v=v1beta1").api_version == "meta.k8s.io/v1beta1"
    # wildcards come after specific types of the same quality
    assert negotiate(f"*/*,{meta}") == Representation("PartialObjectMetadataList")
    assert negotiate("application/json;stream=foo") is None
    assert negotiate("application/json;q=abc") is None  # an unreadable quality counts as 0
    assert negotiate("garbage") is None and negotiate(",,,") is None
    assert Representation("Table").view == "table" and AS_STORED.view == "full"


def test_kind_must_fit_the_answer() -> None:
    one, many = Representation("PartialObjectMetadata"), Representation("PartialObjectMetadataList")
    assert mismatch(one, "", "Pod", is_list=False) is None
    assert mismatch(many, "coordination.k8s.io", "Lease", is_list=True) is None
    error = mismatch(many, "coordination.k8s.io", "Lease", is_list=False)
    assert error is not None and error.status == 406 and error.message.endswith("(*coordination.Lease)")
    assert mismatch(Representation("Table"), "", "Pod", is_list=True) is None


@given(st.text(alphabet=st.sampled_from(list("applicaton/jsx*;=,. qv0.5-asTbMeLPrOk8")), max_size=80))
def test_any_header_gets_an_answer(header: str) -> None:
    found = negotiate(header)
    assert found is None or found.view in ("full", "metadata", "table")


def test_only_full_wildcards() -> None:
    assert negotiate("*/json") is None
    assert negotiate("text/*") is None
    assert negotiate("application/*") == AS_STORED
