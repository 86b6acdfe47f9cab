"""KFP-shaped installs: small kustomizations laid out like KFP's own manifests.

The tests render this repository's overlays and components on top of them, offline. Each
holds the objects the drop-in touches or sits beside, as KFP's manifests at that tag
render them (``manifests/kustomize``: ``env/platform-agnostic``,
``env/platform-agnostic-multi-user`` and, from 2.15, ``env/cert-manager/
platform-agnostic-standalone-tls``): the metadata-writer Deployment with its
ServiceAccount and RBAC, MLMD's Deployment, Service and ``metadata-grpc-configmap``, the
API server (an object the reconciler's rollback must never touch), and for the TLS
install cert-manager's Issuer and Certificate and the patches that give MLMD its
certificate and the writer its CA. Written here from those facts; no KFP file is copied.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

Obj = dict[str, Any]

NAMESPACE = "kubeflow"
VERSIONS = ("1.8.5", "2.5.0", "2.17.0")
WRITER = "metadata-writer"
WRITER_SA = "kubeflow-pipelines-metadata-writer"
TLS_SECRET = "kfp-api-tls-cert"
TLS_MOUNT = "/etc/pki/tls/certs"
# The MLMD server image each KFP release runs.
MLMD_SERVER = {"1.8.5": "1.5.0", "2.5.0": "1.14.0", "2.17.0": "1.14.0"}


@dataclass(frozen=True)
class KfpShape:
    """One way of installing KFP: its release, single- or multi-user, with pod-to-pod TLS."""

    version: str
    multi_user: bool = False
    tls: bool = False

    def __post_init__(self) -> None:
        if self.version not in VERSIONS:
            raise ValueError(f"no KFP shape for {self.version}")
        if self.tls and (self.multi_user or self.version != "2.17.0"):
            raise ValueError("KFP ships TLS as a standalone install only, from 2.15 on")

    @property
    def name(self) -> str:
        """e.g. ``2.17.0-standalone-tls``."""
        mode = "multi-user" if self.multi_user else "standalone"
        return f"{self.version}-{mode}" + ("-tls" if self.tls else "")

    @property
    def overlay(self) -> str:
        """The overlay docs/deploy.md prescribes for this install."""
        return "multi-user" if self.multi_user else "kfp-dropin"


SHAPES = (
    *(KfpShape(v) for v in VERSIONS),
    *(KfpShape(v, multi_user=True) for v in VERSIONS),
    KfpShape("2.17.0", tls=True),
)


def _meta(name: str, **labels: str) -> Obj:
    return {"name": name, "labels": labels} if labels else {"name": name}


def _container_security(version: str) -> Obj:
    if version == "1.8.5":
        return {}
    return {
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "runAsNonRoot": True,
            "runAsUser": 1000,
            "runAsGroup": 0,
            "capabilities": {"drop": ["ALL"]},
        }
    }


def _writer(version: str) -> Obj:
    image = {
        "1.8.5": "gcr.io/ml-pipeline/metadata-writer:1.8.5",
        "2.5.0": "ghcr.io/kubeflow/kfp-metadata-writer:2.5.0",
        "2.17.0": "ghcr.io/kubeflow/kfp-metadata-writer:2.17.0",
    }[version]
    pod: Obj = {
        "containers": [
            {
                "name": "main",
                "image": image,
                "env": [
                    {
                        "name": "NAMESPACE_TO_WATCH",
                        "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}},
                    }
                ],
                **_container_security(version),
            }
        ],
        "serviceAccountName": WRITER_SA,
    }
    if version != "1.8.5":
        pod["securityContext"] = {"seccompProfile": {"type": "RuntimeDefault"}}
    if version == "2.17.0":
        # 2.17 waits for MLMD's port before starting the writer.
        pod["initContainers"] = [
            {
                "name": "wait-for-metadata-grpc",
                "image": "docker.io/alpine:3.23",
                "env": [
                    {"name": "WAIT_HOST", "value": "metadata-grpc-service"},
                    {"name": "WAIT_PORT", "value": "8080"},
                ],
                "command": ["/bin/sh", "-ec"],
                "args": ['until nc -z -w 2 "$WAIT_HOST" "$WAIT_PORT"; do sleep 5; done'],
            }
        ]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(WRITER, app=WRITER),
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": WRITER}},
            "template": {"metadata": {"labels": {"app": WRITER}}, "spec": pod},
        },
    }


def _writer_rbac(multi_user: bool) -> list[Obj]:
    rules = [
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch", "update", "patch"]},
        {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]},
        {
            "apiGroups": ["argoproj.io"],
            "resources": ["workflows"],
            "verbs": ["get", "list", "watch", "update", "patch"],
        },
    ]
    subject = {"kind": "ServiceAccount", "name": WRITER_SA, "namespace": NAMESPACE}
    objs: list[Obj] = [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta(WRITER_SA)},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": _meta(f"{WRITER_SA}-role"),
            "rules": rules,
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": _meta(f"{WRITER_SA}-binding"),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": f"{WRITER_SA}-role"},
            "subjects": [subject],
        },
    ]
    if multi_user:
        objs += [
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRole",
                "metadata": _meta(f"{WRITER_SA}-role"),
                "rules": rules,
            },
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRoleBinding",
                "metadata": _meta(f"{WRITER_SA}-binding"),
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": f"{WRITER_SA}-role",
                },
                "subjects": [subject],
            },
        ]
    return objs


def _mlmd(version: str) -> list[Obj]:
    selector = {"component": "metadata-grpc-server"}
    image = f"gcr.io/tfx-oss-public/ml_metadata_store_server:{MLMD_SERVER[version]}"
    return [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": _meta("metadata-grpc-configmap", component="metadata-grpc-server"),
            "data": {
                "METADATA_GRPC_SERVICE_HOST": "metadata-grpc-service",
                "METADATA_GRPC_SERVICE_PORT": "8080",
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": _meta("metadata-grpc-service", app="metadata"),
            "spec": {
                "selector": selector,
                "type": "ClusterIP",
                "ports": [{"port": 8080, "protocol": "TCP", "name": "grpc-api"}],
            },
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": _meta("metadata-grpc-deployment", component="metadata-grpc-server"),
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": selector},
                "template": {
                    "metadata": {"labels": selector},
                    "spec": {
                        "serviceAccountName": "metadata-grpc-server",
                        "containers": [
                            {
                                "name": "container",
                                "image": image,
                                "env": [
                                    {
                                        "name": "METADATA_GRPC_SERVICE_PORT",
                                        "valueFrom": {
                                            "configMapKeyRef": {
                                                "name": "metadata-grpc-configmap",
                                                "key": "METADATA_GRPC_SERVICE_PORT",
                                            }
                                        },
                                    }
                                ],
                                "args": ["--grpc_port=$(METADATA_GRPC_SERVICE_PORT)"],
                                "ports": [{"name": "grpc-api", "containerPort": 8080}],
                            }
                        ],
                    },
                },
            },
        },
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta("metadata-grpc-server")},
    ]


def _api_server(version: str) -> list[Obj]:
    labels = {"app": "ml-pipeline"}
    return [
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": _meta("ml-pipeline", **labels),
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "serviceAccountName": "ml-pipeline",
                        "containers": [
                            {
                                "name": "ml-pipeline-api-server",
                                "image": f"ghcr.io/kubeflow/kfp-api-server:{version}",
                            }
                        ],
                    },
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": _meta("ml-pipeline", **labels),
            "spec": {
                "selector": labels,
                "ports": [{"name": "http", "port": 8888}, {"name": "grpc", "port": 8887}],
            },
        },
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta("ml-pipeline")},
    ]


def _istio_policy() -> Obj:
    # Multi-user KFP admits every caller to MLMD through the mesh.
    return {
        "apiVersion": "security.istio.io/v1beta1",
        "kind": "AuthorizationPolicy",
        "metadata": _meta("metadata-grpc-service"),
        "spec": {
            "action": "ALLOW",
            "rules": [{}],
            "selector": {"matchLabels": {"component": "metadata-grpc-server"}},
        },
    }


def _tls_objects() -> list[Obj]:
    service_names = [
        f"{service}{suffix}"
        for service in ("ml-pipeline", "metadata-grpc-service")
        for suffix in ("", f".{NAMESPACE}", f".{NAMESPACE}.svc", f".{NAMESPACE}.svc.cluster.local")
    ]
    return [
        {
            "apiVersion": "cert-manager.io/v1",
            "kind": "Issuer",
            "metadata": _meta("kfp-api-tls-selfsigned-issuer"),
            "spec": {"selfSigned": {}},
        },
        {
            "apiVersion": "cert-manager.io/v1",
            "kind": "Certificate",
            "metadata": _meta(TLS_SECRET),
            "spec": {
                "commonName": TLS_SECRET,
                "isCA": True,
                "dnsNames": [*service_names, "metadata-envoy-service", "localhost"],
                "ipAddresses": ["127.0.0.1"],
                "issuerRef": {"kind": "Issuer", "name": "kfp-api-tls-selfsigned-issuer"},
                "secretName": TLS_SECRET,
            },
        },
    ]


def _tls_patches() -> dict[str, Obj]:
    volume = {"name": "tls-certs", "secret": {"secretName": TLS_SECRET}}
    mount = {"name": "tls-certs", "mountPath": TLS_MOUNT, "readOnly": True}
    return {
        # The writer: TLS on, the CA from the mounted Secret.
        WRITER: {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": WRITER},
            "spec": {
                "template": {
                    "spec": {
                        "containers": [
                            {
                                "name": "main",
                                "env": [
                                    {"name": "METADATA_TLS_ENABLED", "value": "true"},
                                    {"name": "CA_CERT_PATH", "value": f"{TLS_MOUNT}/ca.crt"},
                                ],
                                "volumeMounts": [mount],
                            }
                        ],
                        "volumes": [volume],
                    }
                }
            },
        },
        # MLMD: serves TLS only, with the same Secret's key and certificate.
        "metadata-grpc-deployment": {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "metadata-grpc-deployment"},
            "spec": {
                "template": {
                    "spec": {
                        "containers": [
                            {
                                "name": "container",
                                "args": [
                                    "--grpc_port=8080",
                                    "--metadata_store_server_config_file=/etc/grpc/config.proto",
                                ],
                                "volumeMounts": [mount],
                            }
                        ],
                        "volumes": [volume],
                    }
                }
            },
        },
    }


def _multi_user_patch() -> Obj:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": WRITER},
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {
                            "name": "main",
                            "env": [{"name": "NAMESPACE_TO_WATCH", "value": "", "valueFrom": None}],
                        }
                    ]
                }
            }
        },
    }


def _dump(path: Path, objs: list[Obj] | Obj) -> str:
    docs = objs if isinstance(objs, list) else [objs]
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return path.name


def write_kfp_install(directory: Path, shape: KfpShape) -> Path:
    """Write the KFP-shaped kustomization of ``shape`` into ``directory`` (created); returns it.

    Like KFP's own: ``namespace: kubeflow``, KFP's common label on everything, the
    multi-user and TLS differences as patches over the single-user objects.
    """
    directory.mkdir(parents=True, exist_ok=True)
    resources = [
        _dump(directory / "metadata-writer.yaml", [_writer(shape.version), *_writer_rbac(shape.multi_user)]),
        _dump(directory / "metadata.yaml", _mlmd(shape.version)),
        _dump(directory / "api-server.yaml", _api_server(shape.version)),
    ]
    patches: list[Obj] = []
    if shape.multi_user:
        resources.append(_dump(directory / "istio.yaml", _istio_policy()))
        patches.append({"path": _dump(directory / "multi-user-writer.yaml", _multi_user_patch())})
    if shape.tls:
        resources.append(_dump(directory / "certificates.yaml", _tls_objects()))
        for target, patch in _tls_patches().items():
            name = _dump(directory / f"tls-{target}.yaml", patch)
            patches.append({"path": name, "target": {"kind": "Deployment", "name": target}})
    kustomization: Obj = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "namespace": NAMESPACE,
        "labels": [{"pairs": {"application-crd-id": "kubeflow-pipelines"}}],
        "resources": resources,
    }
    if patches:
        kustomization["patches"] = patches
    _dump(directory / "kustomization.yaml", kustomization)
    return directory
