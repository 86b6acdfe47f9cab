"""KFP's TLS install, end to end: the controller, configured by exactly the environment the
drop-in plus deploy/components/kfp-tls renders, against the project's MLMD gRPC server
serving TLS only. With the right CA it converges; with a wrong one (or a file that is no
certificate) it stays up, reports one clear error, and /readyz answers 503."""

from __future__ import annotations

import datetime
import ipaddress
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from sandbox.apiserver import ApiServer
from store.connect import open_store
from store.server import MetadataServer
from tests import podfactory
from tests.controller.harness import wait_until
from tests.deploy import manifests
from tests.deploy.controller_process import ControllerProcess, start_controller
from tests.deploy.manifests import DEPLOY

EXECUTION_ID = "pipelines.kubeflow.org/metadata_execution_id"
GOOD_STEPS = 6


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _ca(common_name: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    now = datetime.datetime.now(datetime.UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """KFP's CA (as cert-manager's kfp-api-tls-cert holds it), MLMD's certificate for
    localhost signed by it, and an unrelated CA."""
    directory = tmp_path_factory.mktemp("pki")
    ca_key, ca = _ca("kfp-api-tls-cert")
    _, other_ca = _ca("some other CA")
    now = datetime.datetime.now(datetime.UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("metadata-grpc-service"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("metadata-grpc-service"),
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                ]
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    paths = {
        "ca": directory / "ca.crt",
        "other-ca": directory / "other-ca.crt",
        "not-a-certificate": directory / "junk.crt",
        "cert": directory / "tls.crt",
        "key": directory / "tls.key",
    }
    paths["ca"].write_bytes(_pem(ca))
    paths["other-ca"].write_bytes(_pem(other_ca))
    paths["not-a-certificate"].write_text("this is not a PEM certificate\n")
    paths["cert"].write_bytes(_pem(cert))
    paths["key"].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return paths


@pytest.fixture
def tls_mlmd(pki: dict[str, Path], tmp_path: Path) -> Iterator[MetadataServer]:
    """MLMD serving TLS only, as KFP's TLS install runs it."""
    server = MetadataServer(
        f"sqlite:///{tmp_path}/mlmd.sqlite", tls_cert_path=str(pki["cert"]), tls_key_path=str(pki["key"])
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def api(tmp_path: Path) -> Iterator[ApiServer]:
    """The stand-in API server with two KFP runs, as Argo 3.3 leaves their pods."""
    server = ApiServer(bookmark_interval=0.5).start()
    for workflow in ("wf-tls-a", "wf-tls-b"):
        for pod in podfactory.pods_of(podfactory.chain(workflow, GOOD_STEPS // 2), profile="3.3"):
            server.store.create("pods", pod)
    try:
        yield server
    finally:
        server.stop()


def _tls_env(tmp_path: Path) -> dict[str, str]:
    """The container environment of kfp-dropin + kfp-tls, rendered."""
    objs = manifests.render(
        manifests.write_kustomization(
            tmp_path / "install", [DEPLOY / "overlays" / "kfp-dropin"], [DEPLOY / "components" / "kfp-tls"]
        )
    )
    env = manifests.container_env(objs)
    assert env["METADATA_TLS_ENABLED"] == "true" and env["CA_CERT_PATH"] == "/etc/pki/tls/certs/ca.crt"
    return env


def _run(tmp_path: Path, api: ApiServer, mlmd: MetadataServer, ca_file: Path) -> ControllerProcess:
    """Start the controller with the rendered environment; only where things are differs
    from the cluster: MLMD's host and port, the CA file (the Secret's ca.crt), the API."""
    env = _tls_env(tmp_path)
    env.update(
        METADATA_GRPC_SERVICE_HOST="localhost",  # a name in the server's certificate
        METADATA_GRPC_SERVICE_PORT=str(mlmd.port),
        CA_CERT_PATH=str(ca_file),
        KFPMR_KUBECONFIG=str(api.write_kubeconfig(tmp_path / "kubeconfig")),
        KFPMR_HEALTH_PORT="0",
        KFPMR_RESYNC_INTERVAL_S="1",
        KFPMR_RESYNC_JITTER_S="0",
        KFPMR_LEASE_DURATION_S="3",
        KFPMR_RENEW_DEADLINE_S="2",
        KFPMR_RETRY_PERIOD_S="0.2",
    )
    return start_controller(env, tmp_path)


def _labelled(api: ApiServer) -> int:
    return sum(EXECUTION_ID in (p["metadata"].get("labels") or {}) for p in api.store.list("pods"))


def _log_lines(stderr: str) -> list[dict[str, object]]:
    """stderr as JSON log lines; anything else (a traceback, a line of gRPC's) fails."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    parsed = []
    for line in lines:
        try:
            parsed.append(json.loads(line))
        except json.JSONDecodeError:
            raise AssertionError(f"not a JSON log line: {line!r}\n{stderr[-3000:]}") from None
    return parsed


def test_the_controller_converges_over_tls(
    tmp_path: Path, api: ApiServer, tls_mlmd: MetadataServer, pki: dict[str, Path]
) -> None:
    assert tls_mlmd.url.startswith("grpcs://")
    controller = _run(tmp_path, api, tls_mlmd, pki["ca"])
    try:
        wait_until(lambda: _labelled(api) == GOOD_STEPS, 60, "every step recorded over TLS")
        wait_until(lambda: controller.get("/readyz")[0] == 200, 30, "the leader ready")
        status, text = controller.get("/metrics")
        assert status == 200 and 'result="success"' in text
    finally:
        err = controller.stop()
    assert controller.proc.returncode == 0, err[-3000:]
    store = open_store(f"grpcs://localhost:{tls_mlmd.port}", ca_cert_path=str(pki["ca"]))
    assert len(store.get_executions()) == GOOD_STEPS
    logs = _log_lines(err)
    assert not [line for line in logs if line["level"] in ("ERROR", "CRITICAL")]
    started = [line for line in logs if line["msg"] == "controller started"]
    assert [line["mlmd"] for line in started] == [f"grpcs://localhost:{tls_mlmd.port}"]


@pytest.mark.parametrize(
    ("ca", "cause"), [("other-ca", "handshake"), ("not-a-certificate", "holds no pem certificate")]
)
def test_a_wrong_ca_is_one_clear_error_and_not_ready(
    tmp_path: Path, api: ApiServer, tls_mlmd: MetadataServer, pki: dict[str, Path], ca: str, cause: str
) -> None:
    controller = _run(tmp_path, api, tls_mlmd, pki[ca])

    def failed_passes() -> int:
        _, text = controller.get("/metrics")
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("kfp_metadata_reconciler_passes_total{") and 'result="failed"' in line
        )

    try:
        wait_until(lambda: failed_passes() >= 3, 60, "three failed passes (retries)")
        status, reason = controller.get("/readyz")
        assert status == 503, reason
        assert reason.startswith("MLMD unreachable: ") and cause in reason.lower(), reason
        assert "\n" not in reason.strip()
        assert controller.get("/healthz") == (200, "ok\n")
        assert controller.alive()
    finally:
        err = controller.stop()
    assert controller.proc.returncode == 0, err[-3000:]
    assert _labelled(api) == 0
    logs = _log_lines(err)
    failures = [line for line in logs if line["msg"] == "pass failed"]
    assert len(failures) >= 3
    # One error, the same every time, naming the cause; nothing else went wrong.
    assert len({str(line["error"]) for line in failures}) == 1
    assert cause in str(failures[0]["error"]).lower()
    assert str(failures[0]["error"]) in reason
    others = [
        line for line in logs if line["level"] not in ("INFO", "DEBUG") and line["msg"] != "pass failed"
    ]
    assert not others, others
