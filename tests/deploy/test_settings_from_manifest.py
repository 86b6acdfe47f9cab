"""The env names, args and ports in the rendered Deployment are the ones the code reads."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller import cli
from controller.settings import Settings, load_settings
from tests.deploy import manifests
from tests.deploy.manifests import DEPLOY, OVERLAYS

EXPECTED = {
    # overlay: (namespaces, store URL, own namespace)
    "standalone": (["kubeflow"], "grpc://metadata-grpc-service.kubeflow:8080", "kfp-metadata-reconciler"),
    "multi-user": ([], "grpc://metadata-grpc-service:8080", "kubeflow"),
    "kfp-dropin": (["kubeflow"], "grpc://metadata-grpc-service:8080", "kubeflow"),
}


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No setting leaks in from the test process's own environment."""
    import os

    aliases = set()
    for field in Settings.model_fields.values():
        choices = getattr(field.validation_alias, "choices", None) or []
        aliases.update(c for c in choices if isinstance(c, str))
    for name in list(os.environ):
        if name.startswith("KFPMR_") or name in aliases:
            monkeypatch.delenv(name)
    return monkeypatch


def _port(container: dict, ref: int | str) -> int:
    if isinstance(ref, int):
        return ref
    (port,) = [p["containerPort"] for p in container["ports"] if p["name"] == ref]
    return port


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_settings_built_from_the_rendered_env(overlay: str, clean_env: pytest.MonkeyPatch) -> None:
    objs = manifests.objects(overlay)
    env = manifests.container_env(objs)
    for name, value in env.items():
        clean_env.setenv(name, value)
    settings = load_settings()
    namespaces, store_url, own = EXPECTED[overlay]
    assert settings.namespaces == namespaces
    assert settings.store_url() == store_url
    assert settings.lease_namespace == own == manifests.deployment(objs)["metadata"]["namespace"]
    assert settings.identity == manifests.pod_name(objs)
    assert settings.leader_election is True
    assert settings.log_json is True
    lease_role = manifests.one(objs, "Role", "kfp-metadata-reconciler-leader-election")
    assert [settings.lease_name] == lease_role["rules"][0]["resourceNames"]
    container = manifests.container(objs)
    probes = [container[p]["httpGet"] for p in ("startupProbe", "livenessProbe", "readinessProbe")]
    assert {p["path"] for p in probes} == {"/healthz", "/readyz"}
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    ports = {_port(container, p["port"]) for p in probes}
    (container_port,) = [p["containerPort"] for p in container["ports"]]
    assert ports == {container_port} == {settings.health_port}
    service = manifests.one(objs, "Service")
    (service_port,) = service["spec"]["ports"]
    assert _port(container, service_port["targetPort"]) == settings.health_port
    assert int(service["metadata"]["annotations"]["prometheus.io/port"]) == settings.health_port
    policy_ports = {
        p["port"] for rule in manifests.one(objs, "NetworkPolicy")["spec"]["ingress"] for p in rule["ports"]
    }
    assert policy_ports == {settings.health_port}
    _only_known_variables(env)


def _only_known_variables(env: dict[str, str]) -> None:
    """Every variable set is one the settings read (no typo silently ignored), or gRPC's own."""
    known = {"POD_NAME", "POD_NAMESPACE"}
    for name, field in Settings.model_fields.items():
        known.add(f"KFPMR_{name.upper()}")
        known.update(c for c in getattr(field.validation_alias, "choices", None) or [] if isinstance(c, str))
    grpc = {k: v for k, v in env.items() if k.startswith("GRPC_")}
    assert grpc == {"GRPC_VERBOSITY": "ERROR"}  # gRPC core's log level: DEBUG, INFO, ERROR or NONE
    assert set(env) - set(grpc) <= known, set(env) - set(grpc) - known


@pytest.mark.parametrize("overlay", ["kfp-dropin", "multi-user"])
def test_settings_built_from_the_tls_render(
    overlay: str, clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """With deploy/components/kfp-tls: TLS to the same MLMD, the CA from the mounted Secret."""
    objs = manifests.render(
        manifests.write_kustomization(
            tmp_path, [DEPLOY / "overlays" / overlay], [DEPLOY / "components" / "kfp-tls"]
        )
    )
    env = manifests.container_env(objs)
    _only_known_variables(env)
    for name, value in env.items():
        clean_env.setenv(name, value)
    settings = load_settings()
    assert settings.store_url() == "grpcs://metadata-grpc-service:8080"
    assert settings.mlmd_tls_enabled is True
    assert settings.mlmd_ca_cert_path == "/etc/pki/tls/certs/ca.crt"
    mounts = {m["mountPath"] for m in manifests.container(objs)["volumeMounts"]}
    assert str(Path(settings.mlmd_ca_cert_path).parent) in mounts


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_container_args_parse_with_the_cli(overlay: str) -> None:
    container = manifests.container(manifests.objects(overlay))
    args = cli._parser().parse_args(container.get("args") or ["run"])  # the image's CMD is ["run"]
    assert args.command == "run"
    assert container["args"] == ["run"]
    # No flag overrides the environment: kubeconfig in-cluster, port and namespaces from env.
    assert args.kubeconfig is None and args.health_port is None and args.namespaces is None


def test_service_link_variables_do_not_break_the_grpc_port(clean_env: pytest.MonkeyPatch) -> None:
    """In `kubeflow`, Kubernetes' docker-link variables include
    METADATA_GRPC_SERVICE_PORT=tcp://<ip>:8080, which is also an upstream settings alias:
    the port is taken from that form. The pods still set enableServiceLinks: false, so the
    environment holds only what the manifests say."""
    clean_env.setenv("METADATA_GRPC_SERVICE_HOST", "metadata-grpc-service")
    clean_env.setenv("METADATA_GRPC_SERVICE_PORT", "tcp://10.96.0.17:8080")
    assert load_settings().store_url() == "grpc://metadata-grpc-service:8080"
    for overlay in OVERLAYS:
        pod = manifests.deployment(manifests.objects(overlay))["spec"]["template"]["spec"]
        assert pod["enableServiceLinks"] is False
