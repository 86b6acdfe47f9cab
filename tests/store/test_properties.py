"""Property tests: any mix of pods and pre-existing MLMD state converges in one pass.

On the current library (a fresh SQLite store per example) and on each old MLMD server (one
server per version, each example under workflow names of its own, checked through its run
contexts).
"""

from __future__ import annotations

import itertools
import json
import random
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controller.reconcile_pass import Chunk, run_pass
from controller.report import PassReport
from reconcile.options import ReconcileOptions
from sandbox.mlmd_legacy import LegacyServerError, versioned_server
from sandbox.mlmd_venvs import MlmdVenvError
from store.connect import open_store
from store.metadata import MetadataStore
from tests.conftest import OLD_MLMD_VERSIONS
from tests.podfactory import Step, chain, pod
from tests.store.test_converge import apply_patches
from tests.upstream_writer import write_like_upstream

KFP = "pipelines.kubeflow.org/"


def run(store: Any, pods: list[dict[str, Any]]) -> PassReport:
    return run_pass([Chunk(pods)], MetadataStore.over(store), ReconcileOptions())


@st.composite
def scenarios(draw: st.DrawFn, prefix: str = "wf") -> dict[str, Any]:
    workflows = draw(st.integers(1, 3))
    profile = draw(st.sampled_from(["3.1", "3.3", "3.5"]))
    steps: list[Step] = []
    for w in range(workflows):
        steps += chain(f"{prefix}-{w}", draw(st.integers(1, 4)))
    phases = [draw(st.sampled_from(["Pending", "Running", "Succeeded", "Failed"])) for _ in steps]
    # What existed before the pass: written upstream-style, by an earlier pass of ours, or nothing.
    history = [draw(st.sampled_from(["none", "upstream", "ours", "ours_running"])) for _ in steps]
    bad_labels = [draw(st.sampled_from([None, "missing", "other"])) for _ in steps]
    return {
        "steps": steps,
        "profile": profile,
        "phases": phases,
        "history": history,
        "bad_labels": bad_labels,
        "seed": draw(st.integers(0, 2**16)),
    }


def build_pods(sc: dict[str, Any]) -> list[dict[str, Any]]:
    by_template: dict[str, dict[str, Step]] = {}
    for s in sc["steps"]:
        by_template.setdefault(s.workflow, {})[s.template] = s
    return [
        pod(s, by_template[s.workflow], profile=sc["profile"], phase=phase, outputs_annotation=True)
        for s, phase in zip(sc["steps"], sc["phases"], strict=True)
    ]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_one_pass_converges_from_any_state(sc: dict[str, Any]) -> None:
    tmp = Path(tempfile.mkdtemp())
    try:
        one_pass_converges(open_store(f"sqlite:///{tmp}/m.sqlite"), sc)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


_examples = itertools.count()


@pytest.fixture(scope="module", params=OLD_MLMD_VERSIONS)
def shared_old_mlmd(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Any]:
    """One old MLMD server per version for all examples (starting one per example is too slow)."""
    server = versioned_server(request.param, f"sqlite:///{tmp_path_factory.mktemp('mlmd')}/m.sqlite")
    try:
        server.start()
    except (MlmdVenvError, LegacyServerError) as exc:
        pytest.fail(f"MLMD {request.param} server: {exc}", pytrace=False)
    try:
        yield open_store(server.url)
    finally:
        server.stop()


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_one_pass_converges_from_any_state_on_old_mlmd(shared_old_mlmd: Any, data: st.DataObject) -> None:
    one_pass_converges(shared_old_mlmd, data.draw(scenarios(prefix=f"ex{next(_examples)}")))


def _scoped(store: Any, sc: dict[str, Any]) -> tuple[list[Any], list[Any]]:
    """The executions and artifacts of this example's run contexts (the store may hold others)."""
    executions, artifacts = [], []
    for name in sorted({s.workflow for s in sc["steps"]}):
        context = store.get_context_by_type_and_name("KfpRun", name)
        executions += store.get_executions_by_context(context.id)
        artifacts += store.get_artifacts_by_context(context.id)
    return executions, artifacts


def one_pass_converges(store: Any, sc: dict[str, Any]) -> None:
    """Build the scenario's history, run one pass, check it converged; a second pass is empty."""
    pods = build_pods(sc)
    rng = random.Random(sc["seed"])
    # Earlier history, in pipeline order so upstream links exist where they would.
    for p, how in zip(pods, sc["history"], strict=True):
        if how == "upstream":
            patch = write_like_upstream(store, p, outputs=rng.random() < 0.7)
            p["metadata"]["labels"].update(patch["labels"])
            p["metadata"]["annotations"].update(patch["annotations"])
        elif how.startswith("ours"):
            earlier = json.loads(json.dumps(p))
            if how == "ours_running":
                earlier["status"]["phase"] = "Running"
                earlier["metadata"]["annotations"].pop("workflows.argoproj.io/outputs", None)
            apply_patches([earlier], run(store, [earlier]))
            p["metadata"]["labels"].update(earlier["metadata"]["labels"])
            p["metadata"]["annotations"].update(earlier["metadata"]["annotations"])
    # Labels that lie: an id that does not exist, or one that names another record.
    for p, bad in zip(pods, sc["bad_labels"], strict=True):
        if bad == "missing":
            p["metadata"]["labels"][KFP + "metadata_execution_id"] = "99999"
        elif bad == "other":
            p["metadata"]["labels"][KFP + "metadata_execution_id"] = "1"

    first = run(store, pods)
    assert first.errors == []
    apply_patches(pods, first)
    second = run(store, pods)
    assert sum(second.actions.values()) == 0, second.actions
    assert second.pod_patches == []
    assert second.transactions == 0

    # Exactly one execution per step, one artifact per reported output, each pod
    # labelled with the id of the execution that carries its key.
    executions, artifacts = _scoped(store, sc)
    assert len(executions) == len(pods)
    by_pod = {e.custom_properties["kfp_pod_name"].string_value: e for e in executions}
    for p in pods:
        label = p["metadata"]["labels"][KFP + "metadata_execution_id"]
        assert by_pod[p["metadata"]["name"]].id == int(label)
    finished = [p for p in pods if "workflows.argoproj.io/outputs" in p["metadata"]["annotations"]]
    expected = sum(
        len(json.loads(p["metadata"]["annotations"]["workflows.argoproj.io/outputs"])["artifacts"])
        for p in finished
    )
    assert len(artifacts) == expected
    events = store.get_events_by_execution_ids([e.id for e in executions])
    assert len({(e.execution_id, e.artifact_id, e.type) for e in events}) == len(events)
