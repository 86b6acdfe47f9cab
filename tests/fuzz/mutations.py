"""Hypothesis strategies that mutate realistic KFP v1 step pods the way an attacker (or a bug) would.

A mutation replaces one value the pass reads -- an annotation's JSON text, an env value, a
name, a label, a container field, a status field -- with a hostile one: JSON null, NUL,
lone surrogates, NaN/Infinity, huge integers, wrong types, deep nesting, duplicate keys,
oversized text. Used on the pure functions directly (tests/reconcile) and through the CLI
into real MLMD in a child process (tests/fuzz, `python -m bench fuzz`).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

JSON = dict[str, Any]

PARAMS = "pipelines.kubeflow.org/arguments.parameters"
SPEC = "pipelines.kubeflow.org/component_spec"
OUTPUTS = "workflows.argoproj.io/outputs"
TEMPLATE = "workflows.argoproj.io/template"
NODE_ID = "workflows.argoproj.io/node-id"
NODE_NAME = "workflows.argoproj.io/node-name"
WORKFLOW_LABEL = "workflows.argoproj.io/workflow"

# Text an attacker would try: NUL and other controls, lone surrogates, astral and
# combining characters, quotes and backslashes, SQL and format metacharacters.
HOSTILE_CHARS = "\x00\x01\x1b\x7f\ud800\udbff\udc00\udfff\u0301\ufeff\U0001f600'\"\\%$`;\n\t "
hostile_text = st.text(
    alphabet=st.one_of(st.sampled_from(HOSTILE_CHARS), st.characters(codec=None)), max_size=40
)
numbers = st.one_of(
    st.integers(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([2**31, -(2**31) - 1, 2**63, 1e-7, 0.1, 1e300, 5e-324, -0.0]),
)
scalars = st.one_of(st.none(), st.booleans(), numbers, hostile_text)
json_values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(hostile_text, children, max_size=4)
    ),
    max_leaves=12,
)


def deep_text(depth: int, kind: str) -> str:
    """Valid JSON nested `depth` levels deep (arrays or objects)."""
    if kind == "array":
        return "[" * depth + "]" * depth
    return '{"a":' * depth + "1" + "}" * depth


deep_json = st.builds(deep_text, st.integers(90, 3000), st.sampled_from(["array", "object"]))


def _json_text(value: Any) -> str:
    # allow_nan keeps NaN/Infinity as Python writes them; ensure_ascii keeps lone surrogates
    # as \\udXXX escapes, so the text itself is valid UTF-8, as it is in a real dump.
    return json.dumps(value, allow_nan=True)


json_texts = st.one_of(
    json_values.map(_json_text),
    deep_json,
    hostile_text,  # not JSON at all
    st.builds(
        lambda k, a, b: f'{{"{k}": {a}, "{k}": {b}}}', st.sampled_from("ab"), st.integers(), st.integers()
    ),
)


@dataclass(frozen=True)
class Mutation:
    """A change to one pod: `where` names it in reports; `apply` changes the pod in place."""

    where: str
    value: Any
    apply: Callable[[JSON, Any], None]

    def applied_to(self, pod: JSON) -> JSON:
        """A mutated deep copy of `pod`."""
        mutated = copy.deepcopy(pod)
        self.apply(mutated, self.value)
        return mutated


def _set_annotation(key: str) -> Callable[[JSON, Any], None]:
    def apply(pod: JSON, value: Any) -> None:
        pod["metadata"].setdefault("annotations", {})[key] = value

    return apply


def _set_meta(key: str) -> Callable[[JSON, Any], None]:
    def apply(pod: JSON, value: Any) -> None:
        pod["metadata"][key] = value

    return apply


def _set_label(key: str) -> Callable[[JSON, Any], None]:
    def apply(pod: JSON, value: Any) -> None:
        pod["metadata"].setdefault("labels", {})[key] = value

    return apply


def _set_template_env(pod: JSON, value: Any) -> None:
    for part in ("initContainers", "containers"):
        for container in pod["spec"].get(part, []):
            for env in container.get("env", []):
                if env.get("name") == "ARGO_TEMPLATE":
                    env["value"] = value


def _set_template_field(key: str) -> Callable[[JSON, Any], None]:
    """A field of the Argo template (inside the JSON text of ARGO_TEMPLATE / the annotation)."""

    def apply(pod: JSON, value: Any) -> None:
        annotations = pod["metadata"]["annotations"]
        if TEMPLATE in annotations:
            template = json.loads(annotations[TEMPLATE])
            template[key] = value
            annotations[TEMPLATE] = _json_text(template)
            return
        for part in ("initContainers", "containers"):
            for container in pod["spec"].get(part, []):
                for env in container.get("env", []):
                    if env.get("name") == "ARGO_TEMPLATE":
                        template = json.loads(env["value"])
                        template[key] = value
                        env["value"] = _json_text(template)

    return apply


def _set_output_field(key: str) -> Callable[[JSON, Any], None]:
    """A field of the first output artifact in the outputs annotation."""

    def apply(pod: JSON, value: Any) -> None:
        annotations = pod["metadata"]["annotations"]
        outputs = json.loads(annotations.get(OUTPUTS, '{"artifacts": [{"name": "x"}]}'))
        outputs["artifacts"][0][key] = value
        annotations[OUTPUTS] = _json_text(outputs)

    return apply


def _set_parameter(pod: JSON, value: Any) -> None:
    name, item = value
    pod["metadata"]["annotations"][PARAMS] = _json_text({name: item})


def _set_spec_field(key: str) -> Callable[[JSON, Any], None]:
    def apply(pod: JSON, value: Any) -> None:
        annotations = pod["metadata"]["annotations"]
        spec = json.loads(annotations[SPEC])
        spec[key] = value
        annotations[SPEC] = _json_text(spec)

    return apply


def _set_path(*path: Any) -> Callable[[JSON, Any], None]:
    def apply(pod: JSON, value: Any) -> None:
        target: Any = pod
        for part in path[:-1]:
            target = target[part]
        target[path[-1]] = value

    return apply


def mutations() -> st.SearchStrategy[Mutation]:
    """One hostile change to a pod built by tests/podfactory.py (profile 3.1, 3.3 or 3.5)."""
    text_or_any = st.one_of(hostile_text, json_values)
    m = Mutation
    return st.one_of(
        st.builds(m, st.just("parameter"), st.tuples(hostile_text, json_values), st.just(_set_parameter)),
        st.builds(m, st.just("annotation " + PARAMS), json_texts, st.just(_set_annotation(PARAMS))),
        st.builds(m, st.just("annotation " + SPEC), json_texts, st.just(_set_annotation(SPEC))),
        st.builds(m, st.just("annotation " + OUTPUTS), json_texts, st.just(_set_annotation(OUTPUTS))),
        st.builds(m, st.just("annotation " + NODE_ID), text_or_any, st.just(_set_annotation(NODE_ID))),
        st.builds(m, st.just("annotation " + NODE_NAME), text_or_any, st.just(_set_annotation(NODE_NAME))),
        st.builds(
            m, st.just("env ARGO_TEMPLATE"), st.one_of(json_texts, json_values), st.just(_set_template_env)
        ),
        st.builds(m, st.just("component name"), text_or_any, st.just(_set_spec_field("name"))),
        st.builds(m, st.just("component outputs"), json_values, st.just(_set_spec_field("outputs"))),
        st.builds(m, st.just("template name"), text_or_any, st.just(_set_template_field("name"))),
        st.builds(m, st.just("template inputs"), json_values, st.just(_set_template_field("inputs"))),
        st.builds(
            m, st.just("archiveLocation"), json_values, st.just(_set_template_field("archiveLocation"))
        ),
        st.builds(m, st.just("output name"), text_or_any, st.just(_set_output_field("name"))),
        st.builds(m, st.just("output s3"), json_values, st.just(_set_output_field("s3"))),
        st.builds(m, st.just("metadata.name"), text_or_any, st.just(_set_meta("name"))),
        st.builds(m, st.just("metadata.namespace"), text_or_any, st.just(_set_meta("namespace"))),
        st.builds(m, st.just("metadata.annotations"), json_values, st.just(_set_meta("annotations"))),
        st.builds(m, st.just("metadata.ownerReferences"), json_values, st.just(_set_meta("ownerReferences"))),
        st.builds(
            m,
            st.just("workflow uid"),
            text_or_any,
            st.just(_set_path("metadata", "ownerReferences", 0, "uid")),
        ),
        st.builds(m, st.just("label workflow"), hostile_text, st.just(_set_label(WORKFLOW_LABEL))),
        st.builds(
            m,
            st.just("label sdk type"),
            hostile_text,
            st.just(_set_label("pipelines.kubeflow.org/pipeline-sdk-type")),
        ),
        st.builds(m, st.just("spec"), json_values, st.just(_set_path("spec"))),
        st.builds(m, st.just("spec.containers"), json_values, st.just(_set_path("spec", "containers"))),
        st.builds(
            m, st.just("container env"), json_values, st.just(_set_path("spec", "containers", 1, "env"))
        ),
        st.builds(
            m,
            st.just("container command"),
            json_values,
            st.just(_set_path("spec", "containers", 1, "command")),
        ),
        st.builds(
            m, st.just("container name"), text_or_any, st.just(_set_path("spec", "containers", 1, "name"))
        ),
        st.builds(m, st.just("status"), json_values, st.just(_set_path("status"))),
        st.builds(m, st.just("status.phase"), text_or_any, st.just(_set_path("status", "phase"))),
        st.builds(
            m,
            st.just("huge annotation"),
            st.integers(200_000, 400_000).map(lambda n: "x" * n),
            st.just(_set_annotation(PARAMS)),
        ),
    )
