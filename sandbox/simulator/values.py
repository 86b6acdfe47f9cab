"""Deterministic, plausible output values for simulated steps.

A step "produces" each output parameter through an ``OutputValues`` callable.
The default, :func:`default_output_value`, looks at names and the KFP component
spec's declared output types so that compiled pipelines behave sensibly: coins flip,
``withParam`` outputs are JSON lists shaped for the loop that consumes them, and
error metrics shrink with each recursion so ``train_until_good`` terminates.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import yaml


@dataclass(frozen=True)
class OutputContext:
    """What a value generator knows about one output of one step.

    Attributes:
        workflow_name: the Workflow's name.
        node_name: the Argo node name of the step (``wf.task`` or ``wf.task(1)``).
        template_name: the template that produced the output.
        output_name: the Argo output name (``<template>-<output>`` for KFP).
        short_name: the component's own output name (prefix removed).
        output_type: the component spec's declared type ("Integer", "JsonArray", ...) or None.
        loop_item_fields: None if no ``withParam`` consumes this output; otherwise the
            ``{{item.<field>}}`` fields the consuming loop reads (empty for ``{{item}}``).
        rng: a generator seeded from the simulator seed and the node name.
        template: the processed template (resource templates carry their manifest).
        json_path: the ``valueFrom.jsonPath`` of a resource template output.
    """

    workflow_name: str
    node_name: str
    template_name: str
    output_name: str
    short_name: str
    output_type: str | None
    loop_item_fields: tuple[str, ...] | None
    rng: random.Random
    template: dict[str, Any] = field(default_factory=dict)
    json_path: str | None = None


OutputValues = Callable[[OutputContext], "str | None"]


def component_output_types(template: dict[str, Any]) -> dict[str, str]:
    """Map each component output name to its declared type (strings only)."""
    ann = (template.get("metadata") or {}).get("annotations") or {}
    raw = ann.get("pipelines.kubeflow.org/component_spec")
    if not raw:
        return {}
    try:
        spec = json.loads(raw)
    except ValueError:
        return {}
    types: dict[str, str] = {}
    for out in spec.get("outputs") or []:
        if isinstance(out, dict) and isinstance(out.get("name"), str):
            t = out.get("type")
            types[out["name"]] = t if isinstance(t, str) else json.dumps(t, sort_keys=True)
    return types


def _sanitized(name: str) -> str:
    import re

    return re.sub(r"[^-_.0-9a-zA-Z]", "_", name)


def lookup_output_type(template: dict[str, Any], short_name: str) -> str | None:
    """The declared type of an output, matching KFP's sanitized or original names."""
    types = component_output_types(template)
    if short_name in types:
        return types[short_name]
    for name, t in types.items():
        if _sanitized(name) == short_name or name.replace(" ", "-") == short_name:
            return t
    return None


def recursion_depth(node_name: str) -> int:
    """How many times the most repeated segment occurs in a node name (1 = no recursion)."""
    parts = [p.split("(")[0] for p in node_name.split(".")[1:]]
    return max(Counter(parts).values()) if parts else 1


def _resource_value(ctx: OutputContext) -> str:
    manifest_text = (ctx.template.get("resource") or {}).get("manifest") or ""
    try:
        manifest = yaml.safe_load(manifest_text) or {}
    except yaml.YAMLError:
        manifest = {}
    if not isinstance(manifest, dict):
        manifest = {}
    meta = manifest.setdefault("metadata", {})
    if not meta.get("name"):
        gen = meta.pop("generateName", None) or f"{ctx.template_name}-"
        meta["name"] = gen + "".join(ctx.rng.choice("bcdfghjklmnpqrstvwxz2456789")
                                     for _ in range(5))
    meta.setdefault("namespace", "kubeflow")
    if manifest.get("kind") == "PersistentVolumeClaim":
        storage = (((manifest.get("spec") or {}).get("resources") or {}).get("requests")
                   or {}).get("storage", "1Gi")
        manifest["status"] = {"phase": "Bound", "accessModes": ["ReadWriteOnce"],
                              "capacity": {"storage": storage}}
    elif manifest.get("kind") == "VolumeSnapshot":
        manifest["status"] = {"readyToUse": True, "restoreSize": "1Gi"}
    path = (ctx.json_path or "{}").strip()
    if path in ("{}", "{.}", ""):
        return json.dumps(manifest, separators=(",", ":"), sort_keys=True)
    cur: Any = manifest
    for part in path.strip("{}").lstrip(".").split("."):
        if isinstance(cur, dict) and part in cur:
            cur = cur[part]
        else:
            return ""
    return cur if isinstance(cur, str) else json.dumps(cur, separators=(",", ":"))


def default_output_value(ctx: OutputContext) -> str:
    """A deterministic, plausible value for one output parameter."""
    if ctx.template.get("resource") is not None:
        return _resource_value(ctx)
    rng = ctx.rng
    lname = ctx.short_name.lower()
    ltype = (ctx.output_type or "").lower()
    if ctx.loop_item_fields is not None:
        n = 3
        if ctx.loop_item_fields:
            items: list[Any] = [
                {f: f"{f}-{i}-{rng.randrange(1000)}" for f in ctx.loop_item_fields}
                for i in range(n)
            ]
        elif "int" in ltype or "int" in ctx.template_name:
            items = [rng.randrange(1, 100) for _ in range(n)]
        elif "dict" in ltype or "object" in ltype:
            items = [{"key": f"value-{i}"} for i in range(n)]
        else:
            items = [f"item-{i}-{rng.randrange(1000)}" for i in range(n)]
        return json.dumps(items)
    if "flip" in ctx.template_name or "coin" in ctx.template_name:
        return rng.choice(["heads", "tails"])
    if any(w in lname for w in ("error", "loss")):
        depth = recursion_depth(ctx.node_name)
        return str(round(0.02 * (0.1 ** (depth - 1)) * (1 + rng.random()), 6))
    if ltype in ("integer", "int"):
        return str(rng.randrange(1, 1000))
    if ltype in ("float", "double"):
        return str(round(rng.random(), 4))
    if ltype in ("boolean", "bool"):
        return rng.choice(["True", "False"])
    if ltype in ("jsonarray", "list") or ltype.startswith("typing.list"):
        return json.dumps([rng.randrange(100) for _ in range(3)])
    if ltype in ("jsonobject", "dict") or ltype.startswith("typing.dict"):
        return json.dumps({"value": rng.randrange(100)})
    return f"{ctx.short_name}-{rng.randrange(16**6):06x}"
