"""`kfp-metadata-reconciler sandbox`: the whole loop on a laptop, no cluster needed.

Starts the Kubernetes API emulator, MLMD (the project's gRPC server over SQLite, or the
server of an older MLMD release, as KFP 1.7, 1.8 or 2.0.2 run it: `mlmd_version`),
the Argo/KFP v1 simulator and the controller itself (watch + resync, real
`kubernetes` client over HTTP); runs the project's own compiled KFP v1
pipelines (`sandbox.pipelines`) paced like a cluster while the controller
records them, then checks that a last pass has nothing left to do.

Every run leaves, beside its MLMD file, a dump of the cluster as `kubectl get
pods,workflows,workflowtaskresults -A -o json` prints it (`cluster.json`) and the
`verify --from-file` line to try on it. With `keep`, the emulated cluster, MLMD and
the controller stay up until Ctrl-C (or SIGTERM), and the commands printed work
against them: kubectl, `verify`, `reconcile --dry-run`.
"""

from __future__ import annotations

import json
import random
import shlex
import signal
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from reconcile.redact import redact
from sandbox import pipelines

# The first runs, in order: artifact passing, loops, volumes, exit handlers, raw ContainerOps,
# conditions, every way of passing data, directories, dynamic loops and recursion.
DEMO_PIPELINES = (
    "chain10",
    "two_step",
    "fan_out_fan_in",
    "exit_handler",
    "raw_container_ops",
    "conditions",
    "data_passing",
    "output_directory",
    "parallel_for",
    "train_until_good",
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
    dump: Path | None = None  # cluster.json: what `kubectl get pods,workflows,workflowtaskresults` shows


def demo_workflows(folder: str | None = None) -> list[tuple[str, dict[str, Any]]]:
    """The workflows the demo runs, as (name, workflow) in the order they are first submitted.

    Without `folder`, the project's own pipelines: DEMO_PIPELINES first, then the rest.
    With it, every compiled workflow (`*.yaml`) in that folder, by file name; a folder with
    none, or a file that is not an Argo Workflow, is a FileNotFoundError naming it.
    """
    if folder is None:
        rest = [n for n in pipelines.names() if n not in DEMO_PIPELINES]
        return [(name, pipelines.load(name)) for name in [*DEMO_PIPELINES, *rest]]
    files = sorted(Path(folder).glob("*.yaml"))
    if not files:
        raise FileNotFoundError(f"no compiled workflows (*.yaml) in {folder}")
    workflows = []
    for path in files:
        try:
            workflow = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise FileNotFoundError(f"{path}: not readable as YAML ({type(exc).__name__})") from None
        if not isinstance(workflow, dict) or workflow.get("kind") != "Workflow":
            raise FileNotFoundError(f"{path}: not an Argo Workflow (kind: Workflow)")
        workflows.append((path.stem, workflow))
    return workflows


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


DUMP_RESOURCES = ("pods", "workflows", "workflowtaskresults")
COMMAND = "kfp-metadata-reconciler"


def write_cluster_dump(store: Any, path: Path) -> Path:
    """The emulated cluster's pods, Workflows and WorkflowTaskResults as one `List`.

    The shape `kubectl get pods,workflows,workflowtaskresults -A -o json` prints, and
    `verify --from-file` / `reconcile --from-file` read.
    """
    items = [obj for resource in DUMP_RESOURCES for obj in store.list(resource)]
    document = {"apiVersion": "v1", "kind": "List", "items": items, "metadata": {"resourceVersion": ""}}
    path.write_text(json.dumps(document, indent=1), encoding="utf-8")
    return path


def wait_for_interrupt() -> None:
    """Block until Ctrl-C (SIGINT) or SIGTERM; the handlers before it are restored after."""
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        while not stop.wait(1.0):
            pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run_demo(
    runs: int = 5,
    *,
    profile: str = "3.5",
    workdir: Path | None = None,
    pipelines_dir: str | None = None,
    seed: int = 0,
    mlmd_url: str | None = None,
    keep: bool = False,
    mlmd_version: str = "current",
    out: Any = sys.stdout,
) -> DemoResult:
    """Run `runs` workflows to completion and reconcile MLMD with them.

    The workflows are the project's own pipelines, or those compiled into
    `pipelines_dir` (see `demo_workflows`). With no `mlmd_url`, the MLMD gRPC server
    of `mlmd_version` ("current": the project's own; "1.0.0", "1.5.0", "1.14.0": an old
    release's, its venv made first if missing) is started over a fresh SQLite file in
    `workdir`, so the demo uses the production path against that server. The cluster is
    dumped to `workdir`/cluster.json. With `keep`, everything stays up until Ctrl-C
    before this returns.
    """
    workflows = demo_workflows(pipelines_dir)
    workdir = (workdir or Path(".sandbox")).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    mlmd_file = workdir / "mlmd.sqlite"
    mlmd_server = None
    if mlmd_url is None:
        from sandbox.mlmd_legacy import CURRENT, versioned_server
        from sandbox.mlmd_venvs import installed_venv

        if mlmd_version != CURRENT and installed_venv(mlmd_version) is None:
            print(f"making the venv of ml-metadata {mlmd_version} (once; about a minute)", file=out)
        mlmd_file.unlink(missing_ok=True)
        mlmd_server = versioned_server(mlmd_version, f"sqlite:///{mlmd_file}", install=True)
        mlmd_server.start()
        mlmd_url = mlmd_server.url
    try:
        return _run(
            runs,
            profile,
            workdir,
            workflows,
            seed,
            mlmd_url,
            mlmd_server,
            keep=keep,
            mlmd_version=mlmd_version,
            out=out,
        )
    finally:
        if mlmd_server is not None:
            mlmd_server.stop()


def _run(
    runs: int,
    profile: str,
    workdir: Path,
    workflows: list[tuple[str, dict[str, Any]]],
    seed: int,
    mlmd_url: str,
    mlmd_server: Any,
    keep: bool,
    mlmd_version: str,
    out: Any,
) -> DemoResult:
    from controller.health import HealthServer, Readiness
    from controller.kube import KubeClient, api_client_from
    from controller.loop import Controller
    from controller.metrics import Metrics
    from controller.settings import Settings
    from sandbox.apiserver import ApiServer
    from sandbox.simulator import Simulator
    from store.capabilities import probe_capabilities
    from store.connect import open_store

    with ApiServer() as server:
        kubeconfig = server.write_kubeconfig(workdir / "kubeconfig")
        hint = "kept up after the runs" if keep else "up while the demo runs; --keep leaves it up"
        print(f"API emulator:  {server.url}  ({hint})", file=out)
        server_name = "the project's gRPC server" if mlmd_version == "current" else f"MLMD {mlmd_version}"
        where = f" ({server_name} over {workdir / 'mlmd.sqlite'})" if mlmd_server else ""
        print(f"MLMD:          {mlmd_url}{where}", file=out)
        print(f"               {probe_capabilities(open_store(mlmd_url)).summary()}", file=out)
        settings = Settings(
            kubeconfig=str(kubeconfig),
            mlmd_url=mlmd_url,
            resync_interval_s=30.0,
            leader_election=False,
            health_port=0,
            health_host="127.0.0.1",
        )
        metrics = Metrics()
        controller = Controller(settings, KubeClient(api_client_from(str(kubeconfig))), metrics, Readiness())
        health = HealthServer("127.0.0.1", 0, metrics, lambda: controller.readiness.check(time.time(), 30.0))
        health.start()
        print(f"controller:    running (metrics at http://127.0.0.1:{health.port}/metrics)", file=out)
        controller.start()
        controller.activate()
        try:
            simulator = Simulator(server.store, profile, seed=seed)
            rng = random.Random(seed)
            for i in range(runs):
                name, workflow = workflows[i] if i < len(workflows) else rng.choice(workflows)
                submitted = simulator.submit(workflow, "kubeflow")
                print(f"submitted      {submitted}  ({name}, Argo {profile})", file=out)
            simulator.run(pace_s=0.05, background=True, stop_when_idle=True)
            store = open_store(mlmd_url)
            while simulator.active:
                time.sleep(1.0)
                done, pods = runs - len(simulator.active), len(server.store.list("pods"))
                print(
                    f"progress:      {done}/{runs} workflows finished, {pods} pods, "
                    f"{len(store.get_executions())} executions in MLMD",
                    file=out,
                )
            # Level-triggered check: passes until one finds nothing to do.
            for _ in range(5):
                final = controller.run_pass("manual")
                if final is not None and not sum(final.actions.values()) and not final.patch_count:
                    break
            result = _print_summary(
                final,
                metrics,
                out,
                runs=runs,
                profile=profile,
                workdir=workdir,
                kubeconfig=kubeconfig,
                mlmd_url=mlmd_url,
                own_mlmd=mlmd_server is not None,
            )
            dump = write_cluster_dump(server.store, workdir / "cluster.json")
            shape = "kubectl get pods,workflows,workflowtaskresults -A -o json"
            print(f"cluster dump:  {dump}  ({shape})", file=out)
            if keep:
                _print_kept(kubeconfig, mlmd_url, dump, out)
                wait_for_interrupt()
                print("stopped", file=out)
            else:
                # Once the demo exits, the MLMD file itself is the store to read.
                local_url = f"sqlite:///{workdir / 'mlmd.sqlite'}" if mlmd_server is not None else mlmd_url
                print(f"try:           {_verify_line(dump, local_url)}", file=out)
        finally:
            controller.stop()
            health.stop()
    return replace(result, dump=dump)


def _verify_line(dump: Path, mlmd_url: str) -> str:
    """The `verify --from-file` command for the dump (the URL's password masked)."""
    return f"{COMMAND} verify --from-file {shlex.quote(str(dump))} --mlmd {shlex.quote(redact(mlmd_url))}"


def _print_kept(kubeconfig: Path, mlmd_url: str, dump: Path, out: Any) -> None:
    """The commands that work against the kept cluster and MLMD."""
    config = shlex.quote(str(kubeconfig))
    url = shlex.quote(redact(mlmd_url))
    lines = [
        f"kubectl --kubeconfig {config} get pods,workflows,workflowtaskresults -A",
        f"{COMMAND} verify -A --kubeconfig {config} --mlmd {url}",
        f"{COMMAND} reconcile -A --dry-run --kubeconfig {config} --mlmd {url}",
        _verify_line(dump, mlmd_url),
    ]
    print("kept running until Ctrl-C; try:", file=out)
    for line in lines:
        print(f"  {line}", file=out)
    out.flush()


def _print_summary(
    final: Any,
    metrics: Any,
    out: Any,
    *,
    runs: int,
    profile: str,
    workdir: Path,
    kubeconfig: Path,
    mlmd_url: str,
    own_mlmd: bool,
) -> DemoResult:
    """Print the final pass and the summary; what the demo recorded.

    `own_mlmd`: MLMD is the project's gRPC server over `workdir`/mlmd.sqlite.
    """
    from prometheus_client.parser import text_string_to_metric_families

    from store.connect import open_store

    assert final is not None
    print(
        f"final pass:    {final.pods_seen} pods, {sum(final.actions.values())} MLMD writes, "
        f"{final.patch_count} pod patches, {len(final.errors)} errors",
        file=out,
    )
    totals: Counter[str] = Counter()
    passes: Counter[str] = Counter()
    patches = 0
    for family in text_string_to_metric_families(metrics.render().decode()):
        for sample in family.samples:
            if sample.name == "kfp_metadata_reconciler_actions_total":
                totals[sample.labels["kind"]] += int(sample.value)
            elif sample.name == "kfp_metadata_reconciler_passes_total":
                passes[sample.labels["trigger"]] += int(sample.value)
            elif sample.name == "kfp_metadata_reconciler_pod_patches_total":
                patches += int(sample.value)
    store = open_store(mlmd_url)
    mlmd_counts = {
        "contexts": len(store.get_contexts()),
        "executions": len(store.get_executions()),
        "artifacts": len(store.get_artifacts()),
    }
    errors = [str(e) for e in final.errors]
    result = DemoResult(
        workdir,
        kubeconfig,
        mlmd_url,
        runs,
        final.pods_seen,
        sum(passes.values()),
        totals,
        patches,
        errors,
        mlmd_counts,
    )
    print("summary:", file=out)
    print(f"  workflows run        {runs} (Argo {profile})", file=out)
    print(f"  pods                 {final.pods_seen}", file=out)
    print(
        f"  MLMD now holds       {mlmd_counts['contexts']} run contexts, "
        f"{mlmd_counts['executions']} executions, {mlmd_counts['artifacts']} artifacts",
        file=out,
    )
    print("  passes               " + ", ".join(f"{k} {v}" for k, v in sorted(passes.items()) if v), file=out)
    for kind, count in sorted(totals.items()):
        if count:
            print(f"  {kind:<20} {count}", file=out)
    print(f"  pod patches          {patches}", file=out)
    for error in errors:
        print(f"  error: {error}", file=out)
    if own_mlmd:
        print(f"MLMD file kept at {workdir / 'mlmd.sqlite'}", file=out)
    return result
