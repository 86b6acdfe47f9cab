"""`kfp-metadata-reconciler sandbox`: the whole loop on a laptop, no cluster needed.

Starts the Kubernetes API emulator, an embedded SQLite MLMD, and the Argo/KFP
v1 simulator; submits fixture workflows; then runs reconcile passes the way
the controller does -- listing pods over HTTP with the real `kubernetes`
client as raw JSON and merge-patching our labels -- until a pass has nothing
left to do.
"""

from __future__ import annotations

import json
import random
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from reconcile.argo import workflow_nodes

# Fixtures that exercise artifact passing, loops, conditions and exit handlers.
DEMO_FIXTURES = (
    "own__chain10.yaml",
    "test__two_step.yaml",
    "own__fan_out_fan_in.yaml",
    "core__exit_handler.yaml",
    "testdata__basic.yaml",
    "core__nested_condition.yaml",
    "test__simple_pipeline_without_importer.yaml",
    "core__output_a_directory__dir_pipeline.yaml",
)


@dataclass(frozen=True)
class DemoResult:
    """What the sandbox run recorded, for the summary and for tests."""

    workdir: Path
    kubeconfig: Path
    mlmd_url: str
    workflows: int
    pods: int
    passes: int
    actions: Counter[str]
    patches: int
    errors: list[str]
    mlmd_counts: dict[str, int]


def find_fixtures(explicit: str | None = None) -> Path:
    """The fixture workflows: `--fixtures`, else `shared/` beside the checkout."""
    candidates = [Path(explicit)] if explicit else []
    here = Path(__file__).resolve().parents[1]
    candidates += [here.parent / "shared" / "fixtures" / "kfp-v1-workflows", here / "fixtures"]
    for path in candidates:
        if path.is_dir() and any(path.glob("*.yaml")):
            return path
    raise FileNotFoundError(
        "no KFP v1 fixture workflows found; pass --fixtures DIR (e.g. ../shared/fixtures/kfp-v1-workflows)"
    )


def list_pods_raw(core: Any) -> list[dict[str, Any]]:
    """All Argo pods, paginated, as raw JSON (no model deserialisation)."""
    pods, token = [], None
    while True:
        response = core.list_pod_for_all_namespaces(
            label_selector="workflows.argoproj.io/workflow",
            limit=500,
            _continue=token,
            _preload_content=False,
        )
        page = json.loads(response.data)
        pods += page.get("items") or []
        token = (page.get("metadata") or {}).get("continue")
        if not token:
            return pods


def run_demo(
    runs: int = 5,
    *,
    profile: str = "3.5",
    workdir: Path | None = None,
    fixtures: str | None = None,
    seed: int = 0,
    mlmd_url: str | None = None,
    out: Any = sys.stdout,
) -> DemoResult:
    """Run `runs` fixture workflows to completion and reconcile MLMD with them.

    With no `mlmd_url`, the project's MLMD gRPC server is started over a
    fresh SQLite file in `workdir`, so the demo uses the production path.
    """
    fixture_dir = find_fixtures(fixtures)
    workdir = (workdir or Path(".sandbox")).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    mlmd_file = workdir / "mlmd.sqlite"
    mlmd_server = None
    if mlmd_url is None:
        from store.server import MetadataServer

        mlmd_file.unlink(missing_ok=True)
        mlmd_server = MetadataServer(f"sqlite:///{mlmd_file}")
        mlmd_server.start()
        mlmd_url = mlmd_server.url
    try:
        return _run(runs, profile, workdir, fixture_dir, seed, mlmd_url, mlmd_server, out)
    finally:
        if mlmd_server is not None:
            mlmd_server.stop()


def _run(
    runs: int,
    profile: str,
    workdir: Path,
    fixture_dir: Path,
    seed: int,
    mlmd_url: str,
    mlmd_server: Any,
    out: Any,
) -> DemoResult:
    from kubernetes import client, config

    from controller.reconcile_pass import reconcile_pods
    from reconcile.options import ReconcileOptions
    from sandbox.apiserver import ApiServer
    from sandbox.simulator import Simulator
    from store.connect import open_store
    from store.types import TypeRegistry

    with ApiServer() as server:
        kubeconfig = server.write_kubeconfig(workdir / "kubeconfig")
        print(f"API emulator:  {server.url}  (kubectl --kubeconfig {kubeconfig} get pods -A)", file=out)
        where = f" (the project's gRPC server over {workdir / 'mlmd.sqlite'})" if mlmd_server else ""
        print(f"MLMD:          {mlmd_url}{where}", file=out)
        simulator = Simulator(server.store, profile, seed=seed)
        rng = random.Random(seed)
        names = [n for n in DEMO_FIXTURES if (fixture_dir / n).exists()] or sorted(
            p.name for p in fixture_dir.glob("*.yaml")
        )
        for i in range(runs):
            name = names[i % len(names)] if i < len(names) else rng.choice(names)
            workflow = yaml.safe_load((fixture_dir / name).read_text())
            submitted = simulator.submit(workflow, "kubeflow")
            print(f"submitted      {submitted}  ({name}, Argo {profile})", file=out)
        steps = simulator.run_until_complete()
        print(f"simulator:     {steps} state transitions, all workflows finished", file=out)

        api = config.new_client_from_config(config_file=str(kubeconfig))
        core = client.CoreV1Api(api)
        store = open_store(mlmd_url)
        types = TypeRegistry(store)
        total: Counter[str] = Counter()
        patches, passes, errors = 0, 0, []
        for passes in range(1, 4):
            pods = list_pods_raw(core)
            nodes = {
                (wf["metadata"]["namespace"], node_id): node
                for wf in server.store.list("workflows")
                for node_id, node in workflow_nodes(wf).items()
            }
            report = reconcile_pods(pods, store, types, ReconcileOptions(), nodes=nodes)
            for patch in report.pod_patches:
                core.patch_namespaced_pod(patch.pod, patch.namespace, patch.patch)
            total.update(report.actions)
            patches += len(report.pod_patches)
            errors = [str(e) for e in report.errors]
            written = sum(report.actions.values())
            print(
                f"pass {passes}:        {len(pods)} pods, {written} MLMD writes, "
                f"{len(report.pod_patches)} pod patches, {len(report.errors)} errors",
                file=out,
            )
            if not written and not report.pod_patches:
                break
        mlmd_counts = {
            "contexts": len(store.get_contexts()),
            "executions": len(store.get_executions()),
            "artifacts": len(store.get_artifacts()),
        }
    result = DemoResult(
        workdir, kubeconfig, mlmd_url, runs, len(pods), passes, total, patches, errors, mlmd_counts
    )
    print("summary:", file=out)
    print(f"  workflows run        {runs}", file=out)
    print(f"  pods                 {len(pods)}", file=out)
    print(
        f"  MLMD now holds       {mlmd_counts['contexts']} run contexts, "
        f"{mlmd_counts['executions']} executions, {mlmd_counts['artifacts']} artifacts",
        file=out,
    )
    for kind, count in sorted(total.items()):
        print(f"  {kind:<20} {count}", file=out)
    print(f"  pod patches          {patches}", file=out)
    print(f"  converged after      {passes} passes (the last one wrote nothing)", file=out)
    for error in errors:
        print(f"  error: {error}", file=out)
    if mlmd_server is not None:
        print(f"MLMD file kept at {workdir / 'mlmd.sqlite'}", file=out)
    return result
