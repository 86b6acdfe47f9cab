"""Convenience entry points: :func:`simulate` one workflow, :func:`generate_load`."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from reconcile.argo import workflow_nodes
from sandbox.cluster import Cluster
from sandbox.simulator.engine import OutputsVisible, Simulator
from sandbox.simulator.profiles import ArgoProfile


@dataclass
class Snapshot:
    """The cluster objects of one workflow after a simulator step."""

    step: int
    workflow: dict[str, Any]
    pods: list[dict[str, Any]]
    taskresults: list[dict[str, Any]]


@dataclass
class SimulationResult:
    """The final objects of one simulated run (and, optionally, every step's snapshot)."""

    name: str
    namespace: str
    profile: ArgoProfile
    workflow: dict[str, Any]
    pods: list[dict[str, Any]]
    taskresults: list[dict[str, Any]]
    configmaps: list[dict[str, Any]]
    steps: int
    outputs_log: list[OutputsVisible]
    cluster: Cluster
    snapshots: list[Snapshot] = field(default_factory=list)

    @property
    def phase(self) -> str:
        """The workflow's final phase."""
        return self.workflow.get("status", {}).get("phase", "")

    @property
    def nodes(self) -> dict[str, dict[str, Any]]:
        """``status.nodes``, decompressing ``status.compressedNodes`` if needed."""
        return workflow_nodes(self.workflow)

    def pod_versions(self) -> dict[str, list[dict[str, Any]]]:
        """Every distinct version of every pod seen in the snapshots, by pod name."""
        seen: dict[str, list[dict[str, Any]]] = {}
        for snap in self.snapshots:
            for pod in snap.pods:
                versions = seen.setdefault(pod["metadata"]["name"], [])
                if not versions or versions[-1]["metadata"].get("resourceVersion") != pod["metadata"].get(
                    "resourceVersion"
                ):
                    versions.append(pod)
        return seen


def _new_store() -> Cluster:
    from sandbox.objectstore import ObjectStore

    return ObjectStore()


def simulate(
    workflow: dict[str, Any],
    profile: str | ArgoProfile = "3.5",
    namespace: str = "kubeflow",
    *,
    snapshots: bool = False,
    cluster: Cluster | None = None,
    name: str | None = None,
    max_steps: int = 10_000,
    **opts: Any,
) -> SimulationResult:
    """Run one workflow to completion on a fresh ObjectStore and return what is left.

    ``opts`` go to :class:`Simulator` (seed, pod_gc, cache, fail, clock, ...).
    With ``snapshots=True`` the result holds the workflow's pods, task results and
    Workflow after every step (running, finished and GC'd states).
    """
    store = cluster if cluster is not None else _new_store()
    sim = Simulator(store, profile, **opts)
    wf_name = sim.submit(workflow, namespace, name)
    selector = f"workflows.argoproj.io/workflow={wf_name}"
    snaps: list[Snapshot] = []

    def capture() -> None:
        snaps.append(
            Snapshot(
                step=sim.steps,
                workflow=store.get("workflows", namespace, wf_name),
                pods=store.list("pods", namespace, selector),
                taskresults=store.list("workflowtaskresults", namespace, selector),
            )
        )

    if snapshots:
        capture()
    steps = 0
    while sim.step():
        steps += 1
        if snapshots:
            capture()
        if steps >= max_steps:
            raise RuntimeError(f"{wf_name} did not complete in {max_steps} steps")
    return SimulationResult(
        name=wf_name,
        namespace=namespace,
        profile=sim.profile,
        workflow=store.get("workflows", namespace, wf_name),
        pods=store.list("pods", namespace, selector),
        taskresults=store.list("workflowtaskresults", namespace, selector),
        configmaps=store.list("configmaps", namespace, selector),
        steps=steps,
        outputs_log=list(sim.outputs_log),
        cluster=store,
        snapshots=snaps,
    )


# ----------------------------------------------------------------------------- load
_COMPONENT_SOURCE = (
    "def step_{i}(input_path, output_path, n):\n"
    "    with open(output_path, 'w') as f:\n"
    "        f.write(open(input_path).read() if input_path else str(n))\n"
)


def chain_workflow(steps: int = 5, name: str = "load-chain") -> dict[str, Any]:
    """A KFP v1 (SDK 1.8.22, V1_LEGACY) shaped chain: step i passes an artifact to i+1."""
    templates: list[dict[str, Any]] = []
    tasks: list[dict[str, Any]] = []
    for i in range(1, steps + 1):
        tname = f"step-{i}"
        out_name = f"{tname}-output"
        args: list[str] = []
        inputs: dict[str, Any] = {"parameters": [{"name": "n"}]}
        comp_inputs: list[dict[str, Any]] = [{"name": "n", "type": "Integer"}]
        impl_args: list[Any] = []
        if i > 1:
            prev = f"step-{i - 1}-output"
            inputs["artifacts"] = [{"name": prev, "path": "/tmp/inputs/input/data"}]
            args += ["--input", "/tmp/inputs/input/data"]
            comp_inputs.insert(0, {"name": "input", "type": "Dataset"})
            impl_args += ["--input", {"inputPath": "input"}]
        args += ["--n", "{{inputs.parameters.n}}", "--output", "/tmp/outputs/output/data"]
        impl_args += ["--n", {"inputValue": "n"}, "--output", {"outputPath": "output"}]
        command = [
            "sh",
            "-ec",
            'program_path=$(mktemp)\nprintf "%s" "$0" > "$program_path"\npython3 -u "$program_path" "$@"\n',
            _COMPONENT_SOURCE.format(i=i),
        ]
        spec = {
            "implementation": {"container": {"args": impl_args, "command": command, "image": "python:3.9"}},
            "inputs": comp_inputs,
            "name": f"Step {i}",
            "outputs": [{"name": "output", "type": "Dataset"}],
        }
        templates.append(
            {
                "name": tname,
                "container": {"args": args, "command": command, "image": "python:3.9"},
                "inputs": inputs,
                "outputs": {"artifacts": [{"name": out_name, "path": "/tmp/outputs/output/data"}]},
                "metadata": {
                    "labels": {
                        "pipelines.kubeflow.org/kfp_sdk_version": "1.8.22",
                        "pipelines.kubeflow.org/pipeline-sdk-type": "kfp",
                        "pipelines.kubeflow.org/enable_caching": "true",
                    },
                    "annotations": {
                        "pipelines.kubeflow.org/component_spec": json.dumps(spec, sort_keys=True),
                        "pipelines.kubeflow.org/component_ref": "{}",
                        "pipelines.kubeflow.org/arguments.parameters": json.dumps(
                            {"n": "{{inputs.parameters.n}}"}, sort_keys=True
                        ),
                    },
                },
            }
        )
        task: dict[str, Any] = {
            "name": tname,
            "template": tname,
            "arguments": {"parameters": [{"name": "n", "value": "{{inputs.parameters.n}}"}]},
        }
        if i > 1:
            prev = f"step-{i - 1}-output"
            task["dependencies"] = [f"step-{i - 1}"]
            task["arguments"]["artifacts"] = [
                {"name": prev, "from": f"{{{{tasks.step-{i - 1}.outputs.artifacts.{prev}}}}}"}
            ]
        tasks.append(task)
    templates.append({"name": name, "inputs": {"parameters": [{"name": "n"}]}, "dag": {"tasks": tasks}})
    pipeline_spec = {
        "inputs": [{"default": "3", "name": "n", "optional": True, "type": "Integer"}],
        "name": name,
    }
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Workflow",
        "metadata": {
            "generateName": f"{name}-",
            "annotations": {
                "pipelines.kubeflow.org/kfp_sdk_version": "1.8.22",
                "pipelines.kubeflow.org/pipeline_compilation_time": "2024-05-01T09:00:00.000000",
                "pipelines.kubeflow.org/pipeline_spec": json.dumps(pipeline_spec, sort_keys=True),
            },
            "labels": {"pipelines.kubeflow.org/kfp_sdk_version": "1.8.22"},
        },
        "spec": {
            "entrypoint": name,
            "templates": templates,
            "arguments": {"parameters": [{"name": "n", "value": "3"}]},
            "serviceAccountName": "pipeline-runner",
        },
    }


def generate_load(
    cluster: Cluster,
    workflows: int = 2000,
    steps: int = 5,
    profile: str | ArgoProfile = "3.5",
    *,
    completed: bool = True,
    seed: int = 0,
    namespace: str | Callable[[int], str] = "kubeflow",
    pod_gc: str | None = None,
    workflow: dict[str, Any] | None = None,
    progress: Callable[[int], None] | None = None,
) -> list[tuple[str, str]]:
    """Create many KFP-shaped workflows quickly; returns their (namespace, name).

    Each workflow is a ``steps``-long artifact-passing chain (or ``workflow``),
    simulated with the same code as :class:`Simulator` but with writes buffered in
    memory: each pod is written once, in its last state, and each Workflow's status
    once. With ``completed=False`` every workflow stops at a seeded random point, with
    running pods, task results and running ``status.nodes`` as a live cluster has them.
    ``namespace`` may be a function of the workflow index.
    """
    rng = random.Random(seed)
    base = workflow or chain_workflow(steps)
    created: list[tuple[str, str]] = []
    batch = 200
    for start in range(0, workflows, batch):
        sim = Simulator(cluster, profile, seed=rng.randrange(1 << 30), pod_gc=pod_gc, _buffered=True)
        stop_at: dict[tuple[str, str], int] = {}
        for i in range(start, min(start + batch, workflows)):
            ns = namespace(i) if callable(namespace) else namespace
            name = sim.submit(base, ns)  # submit() works on its own copy
            created.append((ns, name))
            if not completed:
                stop_at[(ns, name)] = rng.randrange(1, 4 * steps)
        if completed:
            sim.run_until_complete()
        else:
            n = 0
            while sim.active and n <= max(stop_at.values(), default=0):
                n += 1
                for key in [k for k in sim.active if stop_at.get(k, 0) < n]:
                    sim._runs.pop(key, None)
                sim.step()
            for key in list(sim.active):
                sim._runs.pop(key, None)
        sim.flush()
        if progress:
            progress(len(created))
    return created
