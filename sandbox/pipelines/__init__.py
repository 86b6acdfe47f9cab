"""The project's own KFP v1 pipelines, compiled with the real KFP v1 compiler (tests and the demo).

Each ``<name>.py`` beside this file is a pipeline source; it imports ``kfp``, which the project
does not install, so nothing here imports it. ``compiled/<name>.yaml`` is what ``kfp==1.8.22``
made of it in V1_LEGACY mode: an Argo Workflow, unedited. ``scripts/compile-pipelines.sh``
recompiles them (``--check`` compares instead); README.md says what each pipeline covers.

    from sandbox import pipelines

    workflow = pipelines.load("two_step")  # a fresh dict, safe to change
    every = {name: pipelines.load(name) for name in pipelines.names()}
"""

from __future__ import annotations

import copy
from functools import cache
from importlib import resources
from importlib.resources.abc import Traversable
from typing import Any

import yaml

_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the C loader is ~10x faster when present


def _compiled() -> Traversable:
    return resources.files(__name__) / "compiled"


@cache
def names() -> tuple[str, ...]:
    """The names of the compiled pipelines, sorted (``two_step`` for ``compiled/two_step.yaml``)."""
    return tuple(
        sorted(
            entry.name.removesuffix(".yaml")
            for entry in _compiled().iterdir()
            if entry.name.endswith(".yaml")
        )
    )


def load(name: str) -> dict[str, Any]:
    """A fresh copy of the compiled pipeline ``name``, as the Argo Workflow dict it is.

    Raises ``LookupError`` naming the known pipelines when there is no such pipeline.
    """
    return copy.deepcopy(_parsed(name))


@cache
def _parsed(name: str) -> dict[str, Any]:
    if name not in names():
        raise LookupError(f"no compiled pipeline named {name!r}; known: {', '.join(names())}")
    workflow = yaml.load((_compiled() / f"{name}.yaml").read_text(encoding="utf-8"), Loader=_LOADER)
    if not isinstance(workflow, dict) or workflow.get("kind") != "Workflow":
        raise LookupError(f"compiled/{name}.yaml is not an Argo Workflow")
    return workflow
