"""The drop-in over KFP-shaped installs, laid out exactly as docs/deploy.md says.

For each install (KFP 1.8.5, 2.5.0, 2.17.0, single- and multi-user, and 2.17.0 with TLS;
``tests/deploy/kfp_shapes.py``) the docs' two kustomizations are rendered offline: KFP's
with ``disable-metadata-writer``, and the reconciler's own (with ``kfp-tls`` for the TLS
install). Then: the component changes one field of KFP; both documented rollbacks give
KFP's render back exactly (and the quick one is what the next apply undoes); the
reconciler's kustomization shares no object with KFP's, so deleting it cannot delete KFP;
it validates against the Kubernetes 1.30 schemas and finds MLMD where KFP runs it; with
TLS it gets what KFP gives its own writer; and the components fail loudly where they
would otherwise do nothing.
"""

from __future__ import annotations

import copy
import os
import re
from dataclasses import dataclass
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from tests.deploy import kfp_shapes, manifests
from tests.deploy.kfp_shapes import SHAPES, KfpShape
from tests.deploy.manifests import DEPLOY, REPO, Obj, container_env, key, one

DOC = (REPO / "docs" / "deploy.md").read_text()
REPO_PLACEHOLDER = "<path to this repository>"
OURS = {"app.kubernetes.io/name": "kfp-metadata-reconciler"}
COMPONENTS = DEPLOY / "components"


def _doc_yaml(first_line: str) -> str:
    """The docs' YAML block whose first line starts with ``first_line`` (indentation removed)."""
    for match in re.finditer(r"( *)```yaml\n(.*?)\n *```", DOC, re.S):
        indent, body = match.group(1), match.group(2)
        lines = [line.removeprefix(indent) for line in body.splitlines()]
        if lines[0].startswith(first_line):
            return "\n".join(lines) + "\n"
    raise AssertionError(f"docs/deploy.md has no YAML block starting with {first_line!r}")


def _doc_command(pattern: str) -> re.Match[str]:
    found = re.search(pattern, DOC)
    assert found, f"docs/deploy.md has no command matching {pattern!r}"
    return found


def _write(directory: Path, text: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    text = text.replace(REPO_PLACEHOLDER, os.path.relpath(REPO, directory))
    (directory / "kustomization.yaml").write_text(text)
    return directory


def _kfp_kustomization(directory: Path, kfp: Path, component: bool = True) -> Path:
    """The docs' ``kfp/kustomization.yaml``, on the KFP-shaped install in ``kfp``; with
    ``component=False`` as the lasting rollback leaves it (the component's line removed)."""
    text = _doc_yaml("# kfp/kustomization.yaml")
    text, n = re.subn(
        r"(?m)^- github\.com/kubeflow/pipelines/\S+$", f"- {os.path.relpath(kfp, directory)}", text
    )
    assert n == 1, "the docs' KFP kustomization names KFP's manifests once"
    if not component:
        text, n = re.subn(r"(?m)^- .*/deploy/components/disable-metadata-writer\n", "", text)
        assert n == 1
        text = text.replace("components:\n", "")
    return _write(directory, text)


def _reconciler_kustomization(directory: Path, shape: KfpShape) -> Path:
    """The docs' ``kfp-metadata-reconciler/kustomization.yaml`` for ``shape``: the overlay the
    docs prescribe, plus the TLS block for a TLS install."""
    text = _doc_yaml("# kfp-metadata-reconciler/kustomization.yaml: the reconciler")
    assert "/deploy/overlays/kfp-dropin\n" in text
    text = text.replace("/deploy/overlays/kfp-dropin\n", f"/deploy/overlays/{shape.overlay}\n")
    if shape.tls:
        text += _doc_yaml("# kfp-metadata-reconciler/kustomization.yaml, for KFP installed with TLS")
    return _write(directory, text)


@dataclass(frozen=True)
class Install:
    """The renders of one KFP-shaped install, following docs/deploy.md."""

    shape: KfpShape
    kfp: list[Obj]  # KFP as installed before the migration
    kfp_disabled: list[Obj]  # the docs' KFP kustomization, with disable-metadata-writer
    kfp_rolled_back: list[Obj]  # the same after the lasting rollback (component removed)
    reconciler: list[Obj]  # the docs' kustomization of the reconciler
    kfp_dir: Path
    root: Path


@pytest.fixture(scope="module", params=SHAPES, ids=[s.name for s in SHAPES])
def install(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Install:
    shape: KfpShape = request.param
    root = tmp_path_factory.mktemp(shape.name)
    kfp_dir = kfp_shapes.write_kfp_install(root / "kfp-upstream", shape)
    return Install(
        shape=shape,
        kfp=manifests.render(kfp_dir),
        kfp_disabled=manifests.render(_kfp_kustomization(root / "kfp", kfp_dir)),
        kfp_rolled_back=manifests.render(
            _kfp_kustomization(root / "kfp-rolled-back", kfp_dir, component=False)
        ),
        reconciler=manifests.render(_reconciler_kustomization(root / "kfp-metadata-reconciler", shape)),
        kfp_dir=kfp_dir,
        root=root,
    )


def _writer(objs: list[Obj]) -> Obj:
    return one(objs, "Deployment", kfp_shapes.WRITER)


def _by_key(objs: list[Obj]) -> dict[tuple[str, str, str, str], Obj]:
    out = {key(o): o for o in objs}
    assert len(out) == len(objs), "two objects with one name"
    return out


# ------------------------------------------------------------ KFP's side: the component


def test_the_component_changes_only_metadata_writers_replicas(install: Install) -> None:
    before, after = _by_key(install.kfp), _by_key(install.kfp_disabled)
    assert before.keys() == after.keys()
    changed = [k for k in before if before[k] != after[k]]
    assert changed == [key(_writer(install.kfp))]
    was, now = copy.deepcopy(_writer(install.kfp)), copy.deepcopy(_writer(install.kfp_disabled))
    assert (was["spec"].pop("replicas"), now["spec"].pop("replicas")) == (1, 0)
    assert was == now


def test_the_lasting_rollback_restores_kfps_render_exactly(install: Install) -> None:
    assert install.kfp_rolled_back == install.kfp


def test_the_quick_commands_restore_the_field_and_the_next_apply_undoes_them(install: Install) -> None:
    scale = r"kubectl -n kubeflow scale deployment metadata-writer --replicas=(\d)"
    stop, start = (int(m.group(1)) for m in re.finditer(scale, DOC))
    assert (stop, start) == (0, 1)
    # The quick rollback gives back exactly KFP's render...
    scaled = copy.deepcopy(install.kfp_disabled)
    _writer(scaled)["spec"]["replicas"] = start
    assert scaled == install.kfp
    # ...until the next apply of KFP's kustomization, which still says 0 (and the quick
    # stop lasts until KFP's own manifests, which say 1, are applied again).
    assert _writer(install.kfp_disabled)["spec"]["replicas"] == 0 != start
    assert _writer(install.kfp)["spec"]["replicas"] == 1 != stop


# ------------------------------------------------------------ the reconciler's side


def test_the_reconcilers_kustomization_holds_only_the_reconciler(install: Install) -> None:
    ours = _by_key(install.reconciler)
    kfp = _by_key(install.kfp_disabled)
    assert not ours.keys() & kfp.keys(), "an object of KFP's is also the reconciler's"
    for obj in install.reconciler:
        labels = obj["metadata"].get("labels") or {}
        assert OURS.items() <= labels.items(), key(obj)
        assert obj["metadata"]["name"].startswith("kfp-metadata-reconciler"), key(obj)
        assert obj["metadata"].get("namespace", kfp_shapes.NAMESPACE) == kfp_shapes.NAMESPACE
    assert {o["kind"] for o in install.reconciler} >= {"Deployment", "ServiceAccount", "Service"}


def test_one_kustomization_for_both_would_delete_kfp(install: Install) -> None:
    """Why docs/deploy.md forbids the layout: `kubectl delete -k` of a kustomization that
    also renders KFP deletes every object of KFP."""
    both = manifests.write_kustomization(
        install.root / "wrong-layout", [install.kfp_dir, DEPLOY / "overlays" / install.shape.overlay]
    )
    deleted = _by_key(manifests.render(both))
    assert _by_key(install.kfp).keys() <= deleted.keys()
    assert len(deleted) == len(install.kfp) + len(install.reconciler)


def test_the_reconciler_validates_against_the_1_30_schemas(install: Install) -> None:
    for obj in install.reconciler:
        kubernetes_validate.validate(obj, "1.30.0", strict=True)


def test_the_reconciler_finds_mlmd_and_its_namespaces_as_kfp_does(install: Install) -> None:
    env = container_env(install.reconciler)
    host, port = env["METADATA_GRPC_SERVICE_HOST"], int(env["METADATA_GRPC_SERVICE_PORT"])
    service_name, _, namespace = host.partition(".")
    own = manifests.deployment(install.reconciler)["metadata"]["namespace"]
    service = one(install.kfp, "Service", service_name)
    assert service["metadata"]["namespace"] == (namespace or own)
    assert port in [p["port"] for p in service["spec"]["ports"]]
    # The values are those of KFP's metadata-grpc-configmap, whose keys the names are.
    configmap = one(install.kfp, "ConfigMap", "metadata-grpc-configmap")["data"]
    assert configmap["METADATA_GRPC_SERVICE_HOST"] == service_name
    assert int(configmap["METADATA_GRPC_SERVICE_PORT"]) == port
    # The same namespaces as KFP's writer: its own (single-user) or all (multi-user).
    writer = _writer(install.kfp)["spec"]["template"]["spec"]["containers"][0]
    (watch,) = [v for v in writer["env"] if v["name"] == "NAMESPACE_TO_WATCH"]
    ours = manifests.container(install.reconciler)
    (our_watch,) = [v for v in ours["env"] if v["name"] == "NAMESPACE_TO_WATCH"]
    assert our_watch == watch


def test_with_tls_the_reconciler_gets_what_kfp_gives_its_writer(install: Install) -> None:
    ours = manifests.container(install.reconciler)
    our_pod = manifests.deployment(install.reconciler)["spec"]["template"]["spec"]
    tls_names = {"METADATA_TLS_ENABLED", "CA_CERT_PATH"}
    if not install.shape.tls:
        assert not tls_names & {v["name"] for v in ours["env"]}
        assert not manifests.find(install.kfp, "Certificate")
        return
    writer_pod = _writer(install.kfp)["spec"]["template"]["spec"]
    writer = writer_pod["containers"][0]
    # The same variables, with the same values.
    assert [v for v in ours["env"] if v["name"] in tls_names] == [
        v for v in writer["env"] if v["name"] in tls_names
    ]
    ca_path = Path(container_env(install.reconciler)["CA_CERT_PATH"])
    # The same Secret, mounted at the same place; ours holds the CA only.
    (writer_mount,) = writer["volumeMounts"]
    (writer_volume,) = [v for v in writer_pod["volumes"] if v["name"] == writer_mount["name"]]
    (our_mount,) = [m for m in ours["volumeMounts"] if m["mountPath"] == writer_mount["mountPath"]]
    (our_volume,) = [v for v in our_pod["volumes"] if v["name"] == our_mount["name"]]
    assert our_mount["readOnly"] is True
    assert our_volume["secret"]["secretName"] == writer_volume["secret"]["secretName"]
    assert our_volume["secret"]["items"] == [{"key": "ca.crt", "path": "ca.crt"}]
    assert ca_path.parent == Path(our_mount["mountPath"]) and ca_path.name == "ca.crt"
    # The Secret is the one cert-manager writes for KFP, for a name our MLMD host has.
    certificate = one(install.kfp, "Certificate", our_volume["secret"]["secretName"])
    assert certificate["spec"]["secretName"] == our_volume["secret"]["secretName"]
    assert (
        certificate["metadata"]["namespace"]
        == manifests.deployment(install.reconciler)["metadata"]["namespace"]
    )
    assert container_env(install.reconciler)["METADATA_GRPC_SERVICE_HOST"] in certificate["spec"]["dnsNames"]
    # MLMD's server is given the same Secret.
    mlmd_pod = one(install.kfp, "Deployment", "metadata-grpc-deployment")["spec"]["template"]["spec"]
    assert our_volume["secret"]["secretName"] in [
        v.get("secret", {}).get("secretName") for v in mlmd_pod["volumes"]
    ]


def test_kfp_tls_works_on_every_overlay_in_kubeflow(tmp_path: Path) -> None:
    for overlay in ("kfp-dropin", "multi-user"):
        objs = manifests.render(
            manifests.write_kustomization(
                tmp_path / overlay, [DEPLOY / "overlays" / overlay], [COMPONENTS / "kfp-tls"]
            )
        )
        env = container_env(objs)
        assert env["METADATA_TLS_ENABLED"] == "true", overlay
        assert env["CA_CERT_PATH"] == f"{kfp_shapes.TLS_MOUNT}/ca.crt"
        assert env["METADATA_GRPC_SERVICE_HOST"].split(".")[0] == "metadata-grpc-service"
        for obj in objs:
            kubernetes_validate.validate(obj, "1.30.0", strict=True)


# ------------------------------------------------------------ components that would do nothing


@pytest.mark.parametrize(
    ("component", "missing"),
    [
        ("disable-metadata-writer", "metadata-writer"),
        ("kfp-tls", "kfp-metadata-reconciler"),
        ("servicemonitor", "kfp-metadata-reconciler"),
        ("prometheusrule", "kfp-metadata-reconciler"),
        ("grafana-dashboard", "kfp-metadata-reconciler"),
    ],
)
def test_a_component_without_its_deployment_fails_loudly(
    tmp_path: Path, component: str, missing: str
) -> None:
    # disable-metadata-writer in the reconciler's kustomization; the others in KFP's.
    if component == "disable-metadata-writer":
        resources = [DEPLOY / "overlays" / "kfp-dropin"]
    else:
        resources = [kfp_shapes.write_kfp_install(tmp_path / "kfp", KfpShape("2.17.0", tls=True))]
    wrong = manifests.write_kustomization(tmp_path / "wrong", resources, [COMPONENTS / component])
    with pytest.raises(AssertionError) as failed:
        manifests.kustomize(wrong)
    message = " ".join(str(failed.value).split())
    assert f"nothing selected by Deployment.[noVer].[noGrp]/{missing}.[noNs]" in message
    if component == "disable-metadata-writer":
        # The very message docs/deploy.md tells the reader to expect.
        quoted = _doc_command(r"fails with `(nothing selected by\s+Deployment[^`]+)`").group(1)
        assert " ".join(quoted.split()) in message


def test_the_docs_check_commands_name_the_real_things() -> None:
    assert "kubectl kustomize kfp > /dev/null" in DOC
    replicas = _doc_command(
        r"kubectl -n kubeflow get deployment metadata-writer -o jsonpath='\{\.spec\.replicas\}"
    )
    assert replicas
    assert "kubectl -n kubeflow get secret kfp-api-tls-cert" in DOC
    assert "kubectl delete -k kfp-metadata-reconciler" in DOC
    assert "kubectl apply -k kfp\n" in DOC and "kubectl apply -k kfp-metadata-reconciler\n" in DOC
    # The layout the warning is about: the reconciler's kustomization names no KFP manifests.
    ours = yaml.safe_load(_doc_yaml("# kfp-metadata-reconciler/kustomization.yaml: the reconciler"))
    assert [r.split("/deploy/")[-1] for r in ours["resources"]] == ["overlays/kfp-dropin"]
