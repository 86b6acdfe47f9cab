"""controller/dump_source.py: a dump read item by item, spilled, handed on in chunks of whole workflows."""

from __future__ import annotations

import gc
import io
import json
import random
from pathlib import Path
from typing import Any

import pytest

from controller.dump_source import TOO_DEEP, DumpReader, _value_end, read_dump
from controller.sources import Scope, ScopeError
from reconcile.options import ReconcileOptions
from tests.podfactory import chain, pods_of

AWKWARD_ITEMS: list[Any] = [
    {"kind": "Pod", "metadata": {"name": "a", "annotations": {"x": '{"y": [1, 2]}', "z": ']}\\"'}}},
    12345678901234567890123,  # a number any window may cut in two
    -0.5e-7,
    'a string with \\u escapes: \u00e9 \ud800 "quoted" ]}',
    [],
    {},
    None,
    True,
    {"nested": [[[{"a": [1, {"b": "c"}]}]]]},
]


def read_items(text: str, block: int) -> list[Any]:
    return list(DumpReader(io.BytesIO(text.encode("utf-8", "surrogatepass")), "dump.json", block).items())


@pytest.mark.parametrize("block", [1, 2, 3, 7, 64, 1 << 20])
@pytest.mark.parametrize("indent", [None, 1])
def test_items_read_in_any_window_are_what_json_load_reads(block: int, indent: int | None) -> None:
    document = {"apiVersion": "v1", "items": AWKWARD_ITEMS, "kind": "List", "metadata": {"x": [1, 2]}}
    text = json.dumps(document, indent=indent)
    assert read_items(text, block) == json.loads(text)["items"]
    # Keys in any order, `items` first or last; a byte order mark as Windows editors leave it.
    reordered = '\ufeff{"kind": "PodList", "metadata": {}, "items": ' + json.dumps(AWKWARD_ITEMS) + "}"
    assert read_items(reordered, block) == AWKWARD_ITEMS
    assert read_items('{"items": []}', block) == []


def test_an_item_too_deep_for_the_parser_is_skipped_whole_and_the_next_is_read() -> None:
    deep = "[" * 5000 + '"]}[{\\""' + "]" * 5000
    text = '{"items": [{"a": 1}, ' + deep + ', {"b": "]"}]}'
    for block in (5, 1 << 20):
        assert read_items(text, block) == [{"a": 1}, TOO_DEEP, {"b": "]"}]


def test_value_end_counts_brackets_outside_strings_only() -> None:
    text = '{"a": "}]\\"{", "b": [1, {"c": "\\\\"}]} tail'
    assert _value_end(text, 0) == text.index(" tail")
    assert _value_end('{"a": "unterminated }', 0) is None
    assert _value_end('[[["x"]]', 0) is None


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "is empty"),
        ("[1, 2]", "not a Kubernetes List"),
        ('{"kind": "List"}', "no 'items' array"),
        ('{"items": {"a": 1}}', "'items' is not an array"),
        ('{"items": [{"a": 1}, {"b": ', "truncated"),
        ('{"items": [{"a": 1}', "truncated"),
        ('{"items": [{"a": "x', "truncated"),
        ('{"items": [{"a": 1} {"b": 2}]}', "expected ',' or ']'"),
        ('{"items": [{"a": 1}]} []', "extra data"),
        ('{"items": [{"a": tru}]}', "not JSON"),
        ("{items: []}", "expected a key"),
    ],
)
def test_a_dump_wrong_as_a_whole_is_one_scope_error(text: str, fragment: str) -> None:
    for block in (3, 1 << 20):
        with pytest.raises(ScopeError) as caught:
            read_items(text, block)
        assert fragment in str(caught.value) and "dump.json" in str(caught.value)


def test_not_utf8_is_a_scope_error(tmp_path: Path) -> None:
    path = tmp_path / "latin1.json"
    path.write_bytes(b'{"items": [{"a": "\xe9t\xe9"}]}')
    with pytest.raises(ScopeError, match="not UTF-8"):
        read_dump(str(path), Scope(None), ReconcileOptions(), 10)


def test_chunks_hold_whole_workflows_whatever_the_order_of_the_dump(tmp_path: Path) -> None:
    pods = []
    for w in range(12):
        group = pods_of(chain(f"wf-{w:02d}", 1 + w % 4), profile="3.3")
        for pod in group:  # each workflow its own uid, as Argo's are (the factory shares one)
            pod["metadata"]["ownerReferences"][0]["uid"] = f"uid-of-wf-{w:02d}"
        pods += group
    # A pod whose workflow label disagrees with its owner goes with its owner's other pods.
    pods[-1]["metadata"]["labels"]["workflows.argoproj.io/workflow"] = "not-its-workflow"
    random.Random(7).shuffle(pods)
    others = [
        {"kind": "ConfigMap", "metadata": {"name": "c"}},
        {"kind": ["Pod"], "metadata": {"name": "l"}},
        {"kind": "Workflow", "metadata": {"namespace": "kubeflow", "name": 7}},
    ]
    path = tmp_path / "dump.json"
    path.write_text(json.dumps({"kind": "List", "items": [*pods[:20], *others, *pods[20:]]}))
    with read_dump(str(path), Scope(None), ReconcileOptions(), chunk_pods=5) as source:
        chunks = list(source.chunks())
        assert source.read.ignored_items == {"ConfigMap": 1, "<kind not a string>": 1}
        assert [w.message for w in source.read.warnings] == ["item 21: kind is not a string; item ignored"]
        [bad] = source.read.bad_items
        assert (bad.pod, bad.reason) == ("item 22", "malformed_workflow") and "metadata.name" in bad.message
    seen: dict[str, int] = {}
    for number, chunk in enumerate(chunks):
        for pod in chunk.pods:
            workflow = pod["metadata"]["ownerReferences"][0]["uid"]
            assert seen.setdefault(workflow, number) == number, f"{workflow} is split over two chunks"
        assert len(chunk.pods) < 5 + 4  # about chunk_pods: cut at the first workflow end after 5
    assert sum(len(c.pods) for c in chunks) == len(pods) and len(seen) == 12


def test_scope_filters_the_dump_and_the_spill_is_removed(tmp_path: Path) -> None:
    pods = pods_of(chain("wf-a", 2), profile="3.3") + pods_of(chain("wf-b", 2), profile="3.3")
    pods[2]["metadata"]["namespace"] = "other"
    pods[3]["metadata"]["namespace"] = "other"
    path = tmp_path / "dump.json"
    path.write_text(json.dumps({"kind": "List", "items": pods}))
    with read_dump(str(path), Scope(["other"]), ReconcileOptions(), chunk_pods=100) as source:
        spill = Path(source._dir)
        [chunk] = list(source.chunks())
        assert {p["metadata"]["name"] for p in chunk.pods} == {p["metadata"]["name"] for p in pods[2:]}
        assert spill.exists()
    assert not spill.exists()


def test_a_pass_over_a_dump_leaves_no_reference_cycles(tmp_path: Path) -> None:
    """Passes hold the cyclic collector (controller/gc_pause.py): a cycle per step would keep
    every chunk's records alive until the pass ends, and memory would grow with the dump."""
    from controller.reconcile_pass import run_pass
    from store.connect import open_store
    from store.metadata import MetadataStore

    pods = []
    for w in range(6):
        group = pods_of(chain(f"wf-{w}", 3), profile="3.3")
        for pod in group:
            pod["metadata"]["ownerReferences"][0]["uid"] = f"uid-of-wf-{w}"
        pods += group
    path = tmp_path / "dump.json"
    path.write_text(json.dumps({"kind": "List", "items": pods}))
    store = MetadataStore.over(open_store(f"sqlite:///{tmp_path}/mlmd.sqlite"))
    found = []
    gc.collect()
    with read_dump(str(path), Scope(None), ReconcileOptions(), chunk_pods=4) as source:
        for dry_run in (False, True):  # writing, then comparing
            report = run_pass(
                source.chunks(),
                store,
                ReconcileOptions(),
                dry_run=dry_run,
                after_chunk=lambda c, r: found.append(gc.collect()),
            )
            assert report.errors == [] and report.pods_seen == 18
    assert found == [0] * 6  # 3 chunks of 2 whole workflows a pass, no cycle left after any


def test_json_output_keeps_patches_as_redacted_lines_and_empty_lists_as_such() -> None:
    from controller.manual import PatchLog
    from controller.report import PodPatch
    from controller.report_view import write_json

    empty, kept = PatchLog(), PatchLog()
    kept.add([PodPatch("ns", "p\ud800", {"metadata": {"labels": {"a": "mysql://u:pw@db"}}})])
    out = io.StringIO()
    write_json({"empty": empty, "kept": kept, "list": [], "map": {}, "n": [1, {"b": None}]}, out)
    assert json.loads(out.getvalue()) == {
        "empty": [],
        "kept": [
            {
                "namespace": "ns",
                "pod": "p\ud800",
                "patch": {"metadata": {"labels": {"a": "mysql://u:***@db"}}},
            }
        ],
        "list": [],
        "map": {},
        "n": [1, {"b": None}],
    }
    assert out.getvalue().isascii() and len(kept) == 1 and kept[0].pod == "p\ud800"
