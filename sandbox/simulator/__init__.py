"""Argo Workflows / KFP v1 run simulator.

Runs KFP v1 compiled Argo Workflows "as the Argo controller would" against a
:class:`sandbox.cluster.Cluster`, producing pods, WorkflowTaskResults and Workflow
status shaped like the real ones for Argo 3.1, 3.3, 3.5 and 3.6 (see
``docs/argo-anatomy.md``).

Typical use::

    from sandbox.objectstore import ObjectStore
    from sandbox.simulator import Simulator, simulate

    result = simulate(workflow_dict, profile="3.6", snapshots=True)

    store = ObjectStore()
    sim = Simulator(store, "3.3", seed=1, pod_gc="OnPodSuccess", cache=True)
    name = sim.submit(workflow_dict, "kubeflow")
    sim.run_until_complete()
"""

from sandbox.simulator.cache import CacheEntry, KfpCacheWebhook, argo_template, cache_key
from sandbox.simulator.engine import (
    KFP_ARTIFACT_REPOSITORY,
    POD_GC_STRATEGIES,
    OutputsVisible,
    SimClock,
    Simulator,
    merge_patch,
    wall_clock,
)
from sandbox.simulator.expr import evaluate as evaluate_when
from sandbox.simulator.naming import fnv32a, node_id, node_id_from_pod, pod_name
from sandbox.simulator.profiles import PROFILE_VERSIONS, ArgoProfile
from sandbox.simulator.runner import (
    SimulationResult,
    Snapshot,
    chain_workflow,
    generate_load,
    simulate,
    workflow_nodes,
)
from sandbox.simulator.values import OutputContext, default_output_value

__all__ = [
    "KFP_ARTIFACT_REPOSITORY",
    "POD_GC_STRATEGIES",
    "PROFILE_VERSIONS",
    "ArgoProfile",
    "CacheEntry",
    "KfpCacheWebhook",
    "OutputContext",
    "OutputsVisible",
    "SimClock",
    "SimulationResult",
    "Simulator",
    "Snapshot",
    "argo_template",
    "cache_key",
    "chain_workflow",
    "default_output_value",
    "evaluate_when",
    "fnv32a",
    "generate_load",
    "merge_patch",
    "node_id",
    "node_id_from_pod",
    "pod_name",
    "simulate",
    "wall_clock",
    "workflow_nodes",
]
