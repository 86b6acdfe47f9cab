"""The project's own compiled pipelines (``sandbox.pipelines``): they match their sources, and
together they cover every KFP v1 feature the tests and the demo rely on.

A fresh compile is compared with the committed YAML by ``scripts/compile-pipelines.sh --check``
(it needs kfp 1.8.22 in a venv of its own); these tests read the sources without importing them.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from sandbox import pipelines
from sandbox.demo import DEMO_PIPELINES, demo_workflows

SOURCES = Path(pipelines.__file__).parent
KFP = "pipelines.kubeflow.org/"
Workflow = dict[str, Any]


def source_names() -> list[str]:
    return sorted(p.stem for p in SOURCES.glob("*.py") if p.stem != "__init__")


def declared_pipeline(name: str) -> tuple[str, str]:
    """(function, pipeline name) of the ``@dsl.pipeline(name=...)`` function that ``PIPELINE`` names."""
    tree = ast.parse((SOURCES / f"{name}.py").read_text())
    [target] = [
        node.value.id
        for node in tree.body
        if isinstance(node, ast.Assign)
        and [t.id for t in node.targets if isinstance(t, ast.Name)] == ["PIPELINE"]
        and isinstance(node.value, ast.Name)
    ]
    [function] = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == target]
    [decorator] = [
        d
        for d in function.decorator_list
        if isinstance(d, ast.Call) and isinstance(d.func, ast.Attribute) and d.func.attr == "pipeline"
    ]
    [pipeline_name] = [ast.literal_eval(k.value) for k in decorator.keywords if k.arg == "name"]
    return target, pipeline_name


def templates(workflow: Workflow) -> Iterator[dict[str, Any]]:
    yield from workflow["spec"]["templates"]


def tasks(workflow: Workflow) -> Iterator[dict[str, Any]]:
    for template in templates(workflow):
        yield from (template.get("dag") or {}).get("tasks") or []


def annotations(template: dict[str, Any]) -> dict[str, str]:
    return (template.get("metadata") or {}).get("annotations") or {}


def labels(template: dict[str, Any]) -> dict[str, str]:
    return (template.get("metadata") or {}).get("labels") or {}


def output_artifacts(template: dict[str, Any]) -> list[str]:
    return [a["name"] for a in (template.get("outputs") or {}).get("artifacts") or []]


def calls_itself(workflow: Workflow) -> bool:
    """A DAG template that reaches itself through its tasks (a recursive graph component)."""
    graph = {
        t["name"]: {k["template"] for k in (t.get("dag") or {}).get("tasks") or []}
        for t in templates(workflow)
    }

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        return any(
            n == goal or (n not in seen and reaches(n, goal, seen | {n})) for n in graph.get(start, ())
        )

    return any(reaches(name, name, set()) for name in graph)


def component_refs(workflow: Workflow) -> set[str]:
    """What kind of component_ref each component-built template has: {}, digest, or url."""
    kinds = set()
    for template in templates(workflow):
        ref = annotations(template).get(KFP + "component_ref")
        if ref is not None:
            kinds.add("url" if "url" in json.loads(ref) else "digest" if json.loads(ref) else "{}")
    return kinds


def chain_length(workflow: Workflow) -> int:
    """The longest run of DAG tasks each taking the previous task's artifact."""
    longest = 0
    for template in templates(workflow):
        dag = (template.get("dag") or {}).get("tasks") or []
        feeds = {
            t["name"]: {a["from"].split(".")[1] for a in (t.get("arguments") or {}).get("artifacts") or []}
            for t in dag
        }

        def depth(task: str, feeds: dict[str, set[str]] = feeds) -> int:
            return 1 + max((depth(p) for p in feeds.get(task, ()) if p in feeds), default=0)

        longest = max([longest, *(depth(t) for t in feeds)])
    return longest


# Feature -> how to see it in a compiled workflow. Each must hold for at least one pipeline.
FEATURES: dict[str, Callable[[Workflow], bool]] = {
    "create_component_from_func": lambda w: "{}" in component_refs(w),
    "load_component_from_text": lambda w: "digest" in component_refs(w),
    "load_component_from_file (url component_ref)": lambda w: "url" in component_refs(w),
    "raw ContainerOp (no component_spec)": lambda w: any(
        "container" in t and KFP + "component_spec" not in annotations(t) for t in templates(w)
    ),
    "pipeline parameters": lambda w: bool(w["spec"]["arguments"]["parameters"]),
    "artifact passed between steps": lambda w: any(
        (k.get("arguments") or {}).get("artifacts") for k in tasks(w)
    ),
    "file output also passed by value": lambda w: any(
        {p["name"] for p in (t.get("outputs") or {}).get("parameters") or []} & set(output_artifacts(t))
        for t in templates(w)
    ),
    "raw artifact value (constant)": lambda w: any(
        "raw" in a and "{{" not in a["raw"]["data"]
        for t in templates(w)
        for a in (t.get("inputs") or {}).get("artifacts") or []
    ),
    "raw artifact value (pipeline parameter)": lambda w: any(
        "raw" in a for a in w["spec"]["arguments"].get("artifacts") or []
    ),
    "artifact passing through a volume": lambda w: any(
        p["name"].endswith("-subpath")
        for t in templates(w)
        for p in (t.get("outputs") or {}).get("parameters") or []
    ),
    "mlpipeline-ui-metadata output": lambda w: any(
        "mlpipeline-ui-metadata" in output_artifacts(t) for t in templates(w)
    ),
    "mlpipeline-metrics output": lambda w: any(
        "mlpipeline-metrics" in output_artifacts(t) for t in templates(w)
    ),
    "input/output names the compiler must sanitise": lambda w: any(
        re.search(r"[^-_0-9a-zA-Z]", io["name"])
        for t in templates(w)
        for spec in [json.loads(annotations(t).get(KFP + "component_spec", "{}"))]
        for io in [*spec.get("inputs", []), *spec.get("outputs", [])]
    ),
    "task display name": lambda w: any(KFP + "task_display_name" in annotations(t) for t in templates(w)),
    "ParallelFor over static items": lambda w: any("withItems" in k for k in tasks(w)),
    "ParallelFor over a step's output": lambda w: any("{{tasks." in k.get("withParam", "") for k in tasks(w)),
    "ParallelFor over a pipeline parameter": lambda w: any(
        "{{workflow.parameters." in k.get("withParam", "") for k in tasks(w)
    ),
    "ParallelFor over records (item fields)": lambda w: any(
        "{{item." in json.dumps(k.get("arguments")) and "withParam" in k for k in tasks(w)
    ),
    "nested loops": lambda w: any(
        "withItems" in k and t["name"].startswith("for-loop")
        for t in templates(w)
        for k in (t.get("dag") or {}).get("tasks") or []
    ),
    "loop parallelism limit": lambda w: any(t.get("parallelism", 0) > 0 for t in templates(w)),
    "workflow parallelism limit": lambda w: bool(w["spec"].get("parallelism")),
    "condition": lambda w: any("when" in k for k in tasks(w)),
    "nested condition": lambda w: any(
        "when" in k for t in templates(w) if t["name"].startswith("condition") for k in t["dag"]["tasks"]
    ),
    "exit handler": lambda w: "onExit" in w["spec"],
    "recursion (graph component)": calls_itself,
    "retries (set_retry)": lambda w: any("retryStrategy" in t for t in templates(w)),
    "step timeout": lambda w: any("activeDeadlineSeconds" in t for t in templates(w)),
    "workflow timeout": lambda w: "activeDeadlineSeconds" in w["spec"],
    "sidecar": lambda w: any(t.get("sidecars") for t in templates(w)),
    "dnsConfig": lambda w: "dnsConfig" in w["spec"],
    "caching off (set_caching_options(False))": lambda w: any(
        labels(t).get(KFP + "enable_caching") == "false" for t in templates(w)
    ),
    "max_cache_staleness": lambda w: any(
        annotations(t).get(KFP + "max_cache_staleness", "P0D") != "P0D" for t in templates(w)
    ),
    "volatile component (P0D)": lambda w: any(
        annotations(t).get(KFP + "max_cache_staleness") == "P0D" for t in templates(w)
    ),
    "VolumeOp": lambda w: any(
        "kind: PersistentVolumeClaim" in (t.get("resource") or {}).get("manifest", "") for t in templates(w)
    ),
    "VolumeSnapshotOp": lambda w: any(
        "kind: VolumeSnapshot" in (t.get("resource") or {}).get("manifest", "") for t in templates(w)
    ),
    "ResourceOp": lambda w: any(
        "kind: ConfigMap" in (t.get("resource") or {}).get("manifest", "") for t in templates(w)
    ),
    "volume mounted by a step": lambda w: any(
        (t.get("container") or {}).get("volumeMounts") for t in templates(w)
    ),
    "TFX-labelled step": lambda w: any(
        labels(t).get(KFP + "pipeline-sdk-type") == "tfx" for t in templates(w)
    ),
    "v2-annotated step": lambda w: any(
        annotations(t).get(KFP + "v2_component") == "true" for t in templates(w)
    ),
    "run id placeholder": lambda w: "{{workflow.uid}}" in json.dumps(w["spec"]["templates"]),
    "execution id placeholder": lambda w: "{{pod.name}}" in json.dumps(w["spec"]["templates"]),
    "a 10-step chain": lambda w: chain_length(w) >= 10,
    "fan-out/fan-in": lambda w: any(
        "for-loop" in " ".join(k.get("dependencies") or []) and "withItems" not in k and "withParam" not in k
        for k in tasks(w)
    ),
}


def test_every_source_is_compiled_and_nothing_else() -> None:
    assert list(pipelines.names()) == source_names()
    assert len(source_names()) >= 15


@pytest.mark.parametrize("name", source_names())
def test_compiled_yaml_is_the_kfp_1_8_22_compile_of_its_source(name: str) -> None:
    workflow = pipelines.load(name)
    function, pipeline_name = declared_pipeline(name)
    meta = workflow["metadata"]
    spec = json.loads(meta["annotations"][KFP + "pipeline_spec"])
    assert spec["name"] == pipeline_name, f"compiled/{name}.yaml is not the compile of {function}()"
    assert meta["annotations"][KFP + "kfp_sdk_version"] == "1.8.22"
    assert meta["labels"] == {KFP + "kfp_sdk_version": "1.8.22"}
    assert meta["annotations"][KFP + "pipeline_compilation_time"]
    assert workflow["spec"]["serviceAccountName"] == "pipeline-runner"
    for template in templates(workflow):
        if "container" in template or "resource" in template:
            assert labels(template)[KFP + "kfp_sdk_version"] == "1.8.22"
            assert labels(template)[KFP + "enable_caching"] in ("true", "false")


@pytest.mark.parametrize("feature", FEATURES)
def test_the_pipelines_cover(feature: str) -> None:
    covered_by = [name for name in pipelines.names() if FEATURES[feature](pipelines.load(name))]
    assert covered_by, f"no pipeline has {feature}"


def test_the_readme_lists_every_pipeline() -> None:
    readme = (SOURCES / "README.md").read_text()
    for name in pipelines.names():
        assert f"`{name}`" in readme, name


def test_load_gives_a_fresh_copy_and_names_what_is_missing() -> None:
    first = pipelines.load("two_step")
    first["spec"]["templates"].clear()
    assert pipelines.load("two_step")["spec"]["templates"]
    with pytest.raises(LookupError, match=r"no compiled pipeline named 'nope'; known: .*two_step"):
        pipelines.load("nope")


def test_the_demo_runs_its_list_first_then_every_other_pipeline(tmp_path: Path) -> None:
    names = [name for name, _ in demo_workflows()]
    assert names[: len(DEMO_PIPELINES)] == list(DEMO_PIPELINES)
    assert sorted(names) == sorted(pipelines.names())

    (tmp_path / "b.yaml").write_text(json.dumps(pipelines.load("hello_world")))
    (tmp_path / "a.yaml").write_text(json.dumps(pipelines.load("two_step")))
    assert [name for name, _ in demo_workflows(str(tmp_path))] == ["a", "b"]
    (tmp_path / "c.yaml").write_text("kind: ConfigMap\n")
    with pytest.raises(FileNotFoundError, match=r"c\.yaml: not an Argo Workflow"):
        demo_workflows(str(tmp_path))
    with pytest.raises(FileNotFoundError, match="no compiled workflows"):
        demo_workflows(str(tmp_path / "empty"))
