"""Every hostile input of issue 11 that took MLMD or the pass down, as a named regression case.

Each case mutates ONE pod (the victim: the last step of its own workflow, so no other step
depends on it) of a realistic dump, and says what the pass must report for it. Every other
pod of the dump must still converge. The cases run through the real CLI in a child process
(tests/fuzz/test_corpus.py), so an abort of MLMD shows up as a failed case, not a dead run.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

JSON = dict[str, Any]

PARAMS = "pipelines.kubeflow.org/arguments.parameters"
SPEC = "pipelines.kubeflow.org/component_spec"
OUTPUTS = "workflows.argoproj.io/outputs"
TEMPLATE = "workflows.argoproj.io/template"
WORKFLOW_LABEL = "workflows.argoproj.io/workflow"
DEPTH = 1_000  # about what took the pass down: 3 KB of brackets


def deep_json(depth: int = DEPTH) -> str:
    """A valid JSON text nested `depth` levels deep."""
    return "[" * depth + "]" * depth


@dataclass(frozen=True)
class Case:
    """One crasher: how it mutates the victim pod and what the report must say about it.

    `expect` is "error" (the pod is in `errors` with `reason`, its step is not recorded),
    "warning" (the step IS recorded and a warning names `fragment`), or "recorded" (nothing
    to report: the input is valid after all). `fragment` must appear in that error or
    warning message. `profile` is the Argo version the victim's workflow is built as.
    """

    name: str
    mutate: Callable[[JSON], None]
    expect: str
    reason: str | None = None
    fragment: str = ""
    profile: str = "3.3"
    # More pods beside the (mutated) victim that the same verdict applies to.
    twins: Callable[[JSON], list[JSON]] = lambda victim: []
    # A pod no API server stores (a list for a map): it exists only in a hand-made dump.
    dump_only: bool = False


def _annotation(key: str, text: str) -> Callable[[JSON], None]:
    def mutate(pod: JSON) -> None:
        pod["metadata"]["annotations"][key] = text

    return mutate


def _outputs_name(name: str) -> Callable[[JSON], None]:
    def mutate(pod: JSON) -> None:
        outputs = json.loads(pod["metadata"]["annotations"][OUTPUTS])
        outputs["artifacts"][0]["name"] = name
        pod["metadata"]["annotations"][OUTPUTS] = json.dumps(outputs)

    return mutate


def _template_env(text: str) -> Callable[[JSON], None]:
    def mutate(pod: JSON) -> None:
        for part in ("initContainers", "containers"):
            for container in pod["spec"][part]:
                for env in container.get("env", []):
                    if env["name"] == "ARGO_TEMPLATE":
                        env["value"] = text

    return mutate


def _metadata(key: str, value: Any) -> Callable[[JSON], None]:
    def mutate(pod: JSON) -> None:
        pod["metadata"][key] = value

    return mutate


def _label(key: str, value: Any) -> Callable[[JSON], None]:
    def mutate(pod: JSON) -> None:
        pod["metadata"]["labels"][key] = value

    return mutate


def _set(path: tuple[Any, ...], value: Any) -> Callable[[JSON], None]:
    def mutate(pod: JSON) -> None:
        target: Any = pod
        for part in path[:-1]:
            target = target[part]
        target[path[-1]] = value

    return mutate


def _unchanged(pod: JSON) -> None:
    """No mutation: the victim is hostile only together with its twins."""


def _renamed_copy(victim: JSON) -> list[JSON]:
    """The victim again under another name: two pods claiming one node of one workflow."""
    twin = json.loads(json.dumps(victim))
    twin["metadata"]["name"] += "-twin"
    return [twin]


def _spec_name(name: str) -> Callable[[JSON], None]:
    def mutate(pod: JSON) -> None:
        spec = json.loads(pod["metadata"]["annotations"][SPEC])
        spec["name"] = name
        pod["metadata"]["annotations"][SPEC] = json.dumps(spec)

    return mutate


CASES: tuple[Case, ...] = (
    # A JSON null became an MLMD Value with no oneof set: MLMD's C++ core aborted (SIGABRT).
    Case("null_parameter", _annotation(PARAMS, '{"a": null}'), "warning", fragment="parameter 'a'"),
    # NUL was stored cut short, and the step updated on every pass.
    Case("nul_in_parameter", _annotation(PARAMS, '{"a": "x\\u0000y"}'), "error", "invalid_value", "'a'"),
    # NaN, infinities and integers beyond int64 lost the step's record.
    Case("nan_parameter", _annotation(PARAMS, '{"a": NaN}'), "error", "invalid_value", "'a'"),
    Case("infinity_parameter", _annotation(PARAMS, '{"a": Infinity}'), "error", "invalid_value", "'a'"),
    Case("minus_infinity_parameter", _annotation(PARAMS, '{"a": -Infinity}'), "error", "invalid_value"),
    # Beyond MySQL's 32-bit int_value: recorded as decimal text (docs/values.md).
    Case("huge_int_parameter", _annotation(PARAMS, '{"a": 99999999999999999999}'), "recorded"),
    Case("int32_overflow_parameter", _annotation(PARAMS, '{"a": 1700000000000}'), "recorded"),
    # Printed by MLMD with six decimals: 1e-07 became 0 and updated on every pass.
    Case("inexact_double_parameter", _annotation(PARAMS, '{"a": 1e-07, "b": 0.123456789}'), "recorded"),
    Case("surrogate_parameter", _annotation(PARAMS, '{"a": "\\ud800"}'), "error", "invalid_value", "'a'"),
    Case("surrogate_parameter_name", _annotation(PARAMS, '{"\\udfff": 1}'), "error", "invalid_value"),
    # JSON nested ~1,000 deep ended the pass with a RecursionError.
    Case("deep_parameters", _annotation(PARAMS, deep_json()), "warning", fragment="nested deeper"),
    Case("deep_component_spec", _annotation(SPEC, deep_json()), "error", "malformed_annotation", "nested"),
    Case("deep_outputs", _annotation(OUTPUTS, deep_json()), "error", "malformed_annotation", "nested"),
    Case(
        "deep_template_env",
        _template_env(deep_json()),
        "error",
        "malformed_template",
        "nested",
        profile="3.5",
    ),
    Case(
        "deep_template_annotation",
        _annotation(TEMPLATE, deep_json()),
        "error",
        "malformed_template",
        "nested",
        profile="3.1",
    ),
    Case(
        "deep_object_template",
        _template_env('{"a":' * DEPTH + "1" + "}" * DEPTH),
        "error",
        "malformed_template",
        "nested",
        profile="3.5",
    ),
    # A lone surrogate ended the pass with a UnicodeEncodeError inside MLMD's client.
    Case("surrogate_output_name", _outputs_name("out\ud800"), "error", "invalid_value", "output"),
    Case("surrogate_namespace", _metadata("namespace", "kubeflow\ud800"), "error", "invalid_value"),
    Case("surrogate_pod_name", _metadata("name", "pod\udc80"), "error", "invalid_value"),
    Case("surrogate_workflow_label", _label(WORKFLOW_LABEL, "wf\ud800"), "error", "invalid_value"),
    Case("surrogate_component_name", _spec_name("Comp\ud800"), "error", "invalid_value"),
    Case("nul_component_name", _spec_name("Comp\x00onent"), "error", "invalid_value"),
    # Structurally wrong pods gave tracebacks instead of a per-pod error.
    Case("annotations_not_strings", _set(("metadata", "annotations", "x"), 5), "error", "malformed_pod"),
    Case("env_not_a_list", _set(("spec", "containers", 1, "env"), "ARGO"), "error", "malformed_pod", "env"),
    Case(
        "env_item_not_an_object",
        _set(("spec", "containers", 1, "env"), [5]),
        "error",
        "malformed_pod",
        "env",
        profile="3.5",
    ),
    Case(
        "template_env_not_a_string",
        _template_env(5),  # type: ignore[arg-type]
        "error",
        "malformed_template",
        profile="3.5",
    ),
    Case("containers_not_a_list", _set(("spec", "containers"), {"a": 1}), "error", "malformed_pod"),
    Case("container_not_an_object", _set(("spec", "containers"), ["main"]), "error", "malformed_pod"),
    Case("container_name_not_a_string", _set(("spec", "containers", 1, "name"), 7), "error", "malformed_pod"),
    Case("command_not_a_list", _set(("spec", "containers", 1, "command"), 7), "error", "malformed_pod"),
    Case("spec_not_an_object", _set(("spec",), [1]), "error", "malformed_pod", "spec"),
    Case("status_not_an_object", _set(("status",), "Succeeded"), "error", "malformed_pod", "status"),
    Case("phase_not_a_string", _set(("status", "phase"), 3), "error", "malformed_pod", "phase"),
    Case(
        "owner_refs_not_a_list", _metadata("ownerReferences", {"kind": "Workflow"}), "error", "malformed_pod"
    ),
    Case("outputs_not_an_object", _annotation(OUTPUTS, "[1]"), "error", "malformed_annotation"),
    Case("artifacts_name_not_a_string", _annotation(OUTPUTS, '{"artifacts":[{"name":1}]}'), "error"),
    Case("spec_name_not_a_string", _spec_name(5), "error", "malformed_annotation"),  # type: ignore[arg-type]
    # Crashed the dump's reading (sources.pod_node_id, read_file): a whole-pass traceback.
    Case("labels_not_a_map", _metadata("labels", ["a"]), "error", "malformed_pod", "labels", dump_only=True),
    Case(
        "annotations_not_a_map",
        _metadata("annotations", "x"),
        "error",
        "malformed_pod",
        "annotations",
        dump_only=True,
    ),
    Case(
        "node_id_a_list",
        _set(("metadata", "annotations", "workflows.argoproj.io/node-id"), ["a"]),
        "error",
        "malformed_pod",
        "annotations",
        dump_only=True,
    ),
    Case(
        "node_id_a_map",
        _set(("metadata", "annotations", "workflows.argoproj.io/node-id"), {"a": 1}),
        "error",
        "malformed_pod",
        dump_only=True,
    ),
    Case(
        "node_name_a_list",
        _set(("metadata", "annotations", "workflows.argoproj.io/node-name"), ["a"]),
        "error",
        "malformed_pod",
        dump_only=True,
    ),
    # Two pods of one workflow claiming one node id: one got no record, with no error and exit 0.
    Case(
        "duplicate_node_id",
        _unchanged,
        "error",
        "duplicate_step",
        "claim node",
        twins=_renamed_copy,
    ),
    # Inputs that are valid after all: recorded exactly once, converging.
    Case("duplicate_keys_in_parameters", _annotation(PARAMS, '{"a": "1", "a": "2"}'), "recorded"),
    Case("bool_parameter", _annotation(PARAMS, '{"a": true, "b": 1.5, "c": -3}'), "recorded"),
    Case("nested_parameter", _annotation(PARAMS, '{"a": {"b": [1, null]}}'), "recorded"),
    Case(
        "unicode_parameter", _annotation(PARAMS, '{"\\u00e9t\\u00e9": "\\ud83d\\ude00 \\u4e2d"}'), "recorded"
    ),
)

# Dumps that are wrong as a whole, or hold items that are not pods at all: each is a whole
# dump (clean pods -> the document, or its JSON text) and what the command must do with it.
# Before the dump was streamed (controller/dump_source.py) the first three ended the command
# in a traceback (AttributeError, RecursionError) and kind_not_a_string was dropped silently.


@dataclass(frozen=True)
class DumpCase:
    """A whole dump and the verdict: exit 2 with `fragment` in its one `error:` line, or a report.

    With `exit_code` 0 or 1 every clean pod must be recorded once, and `report` must hold
    `fragment` in an error (`reason` set) or warning (`reason` None) naming `pod`.
    """

    name: str
    dump: Callable[[list[JSON]], Any]
    exit_code: int
    fragment: str
    reason: str | None = None
    pod: str = ""


def _with_items(extra: list[Any]) -> Callable[[list[JSON]], Any]:
    return lambda pods: {"apiVersion": "v1", "kind": "List", "items": [*pods, *extra]}


def _pod_with(mutate: Callable[[JSON], None]) -> Callable[[list[JSON]], Any]:
    def dump(pods: list[JSON]) -> Any:
        victim = json.loads(json.dumps(pods[-1]))
        victim["metadata"]["name"] += "-victim"
        mutate(victim)
        return {"apiVersion": "v1", "kind": "List", "items": [*pods, victim]}

    return dump


def _last_pod_with(mutate: Callable[[JSON], None]) -> Callable[[list[JSON]], Any]:
    def dump(pods: list[JSON]) -> Any:
        last = json.loads(json.dumps(pods[-1]))
        mutate(last)
        return {"apiVersion": "v1", "kind": "List", "items": [*pods[:-1], last]}

    return dump


def _text(document: Callable[[list[JSON]], Any], edit: Callable[[str], str]) -> Callable[[list[JSON]], Any]:
    return lambda pods: edit(json.dumps(document(pods)))


DUMP_CASES: tuple[DumpCase, ...] = (
    # 990 levels in a field the pass never reads: Python's parser cannot hold the item; the
    # item (named by its index: it cannot be read) is an error, every other pod converges.
    DumpCase(
        "deep_json_in_the_dump",
        _text(_pod_with(_set(("spec", "x"), "DEEP")), lambda t: t.replace('"DEEP"', "[" * 990 + "]" * 990)),
        1,
        "nested too deep",
        "malformed_pod",
        "item 2",
    ),
    # 60 levels in that field: read, and the pod (cut down to what the pass reads) recorded.
    DumpCase(
        "nested_json_in_the_dump",
        _text(
            _last_pod_with(_set(("spec", "x"), "DEEP")), lambda t: t.replace('"DEEP"', "[" * 60 + "]" * 60)
        ),
        0,
        "",
    ),
    DumpCase("item_not_an_object", _with_items([5]), 1, "not a JSON object", "malformed_pod", "item 2"),
    DumpCase(
        "kind_not_a_string",
        _with_items([{"kind": 5, "metadata": {"name": "k", "namespace": "x"}}]),
        0,
        "kind is not a string",
        None,
        "k",
    ),
    DumpCase("dump_not_a_list", lambda pods: pods, 2, "not a Kubernetes List"),
    DumpCase("items_not_an_array", lambda pods: {"kind": "List", "items": {"a": pods}}, 2, "not an array"),
    DumpCase("no_items", lambda pods: {"kind": "List"}, 2, "no 'items' array"),
    DumpCase("truncated", _text(_with_items([]), lambda t: t[: len(t) // 2]), 2, "truncated"),
    DumpCase(
        "truncated_between_items", _text(_with_items([]), lambda t: t[: t.index("}, {") + 1]), 2, "truncated"
    ),
    DumpCase(
        "garbage_between_items",
        _text(_with_items([]), lambda t: t.replace("}, {", "} x {", 1)),
        2,
        "not JSON",
    ),
    DumpCase("extra_data", _text(_with_items([]), lambda t: t + " {}"), 2, "extra data"),
    DumpCase("empty_file", lambda pods: "", 2, "empty"),
)
