"""All settings in one typed object, read from the environment (and CLI flags).

Every field has a `KFPMR_` environment name; the names KFP uses for the same
things are accepted too: those KFP's metadata-writer reads and the keys of KFP's
metadata-grpc-configmap (docs/configuration.md lists them all; docs/deploy.md says
which KFP release reads which).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from pydantic_settings import SettingsError as SourceError

from reconcile.options import ReconcileOptions
from reconcile.uris import ArtifactRepository
from store.connect import StoreConfigError, parse_store_url

NO_STORE = (
    "no MLMD store configured: give --mlmd URL, or set KFPMR_MLMD_URL, or the MLMD gRPC service's "
    "host (KFPMR_MLMD_GRPC_HOST or METADATA_GRPC_SERVICE_HOST); see docs/configuration.md"
)


class SettingsError(Exception):
    """Invalid settings; the message has one line per bad value."""


class Settings(BaseSettings):
    """The reconciler's configuration."""

    model_config = SettingsConfigDict(env_prefix="KFPMR_", populate_by_name=True, extra="ignore")

    mlmd_url: str | None = Field(
        default=None,
        description="MLMD store URL: sqlite:///path, mysql://user:pass@host:port/db, "
        "grpc://host:port or grpcs://host:port. Default: grpc(s)://<mlmd_grpc_host>:<mlmd_grpc_port> "
        "if a host is set; one of the two is required (there is no default store).",
    )
    mlmd_grpc_host: str | None = Field(
        default=None,
        validation_alias=AliasChoices(
            "KFPMR_MLMD_GRPC_HOST", "METADATA_GRPC_SERVICE_HOST", "METADATA_GRPC_SERVICE_SERVICE_HOST"
        ),
        description="MLMD gRPC host. METADATA_GRPC_SERVICE_HOST is a key of KFP's metadata-grpc-configmap; "
        "METADATA_GRPC_SERVICE_SERVICE_HOST is Kubernetes' service link, which KFP's writer <= 2.14 reads.",
    )
    mlmd_grpc_port: int = Field(
        default=8080,
        ge=1,
        le=65535,
        validation_alias=AliasChoices(
            "KFPMR_MLMD_GRPC_PORT", "METADATA_GRPC_SERVICE_PORT", "METADATA_GRPC_SERVICE_SERVICE_PORT"
        ),
        description="MLMD gRPC port (the same two sources as the host; tcp://ip:port is read too).",
    )
    mlmd_tls_enabled: bool = Field(
        default=False,
        validation_alias=AliasChoices("KFPMR_MLMD_TLS_ENABLED", "METADATA_TLS_ENABLED"),
        description="Use TLS for the gRPC connection (KFP's writer: METADATA_TLS_ENABLED).",
    )
    mlmd_ca_cert_path: str | None = Field(
        default=None,
        validation_alias=AliasChoices("KFPMR_MLMD_CA_CERT_PATH", "CA_CERT_PATH"),
        description="CA bundle for TLS (KFP's writer: CA_CERT_PATH).",
    )
    mlmd_max_receive_message_length: int | None = Field(
        default=None,
        gt=0,
        validation_alias=AliasChoices(
            "KFPMR_MLMD_MAX_RECEIVE_MESSAGE_LENGTH", "METADATA_GRPC_MAX_RECEIVE_MESSAGE_LENGTH"
        ),
        description="gRPC max receive message length in bytes.",
    )
    namespaces: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        validation_alias=AliasChoices("KFPMR_NAMESPACES", "NAMESPACE_TO_WATCH"),
        description="Namespaces to reconcile, comma-separated; empty = all "
        "(KFP's writer: NAMESPACE_TO_WATCH).",
    )
    artifact_s3_endpoint: str = Field(
        default="minio-service.kubeflow:9000",
        description="Endpoint of the default artifact repository, for key-only artifacts.",
    )
    artifact_s3_bucket: str = Field(
        default="mlpipeline", description="Bucket of the default artifact repository."
    )
    record_cache_hits: bool = Field(
        default=False, description="Record KFP cache hits as CACHED executions linking the original."
    )
    record_non_kfp_pods: bool = Field(
        default=True, description="Record Argo pods without KFP markers, as the upstream writer does."
    )
    write_batch_workflows: int = Field(
        default=50,
        ge=1,
        le=1000,
        description="Workflows written to MLMD together (at most 500 steps), in at most three "
        "transactions, where the server has put_lineage_subgraph; 1: one transaction per workflow.",
    )

    # --- the controller (`run`) ---------------------------------------------
    kubeconfig: str | None = Field(
        default=None,
        validation_alias=AliasChoices("KFPMR_KUBECONFIG", "KUBECONFIG"),
        description="Kubeconfig file; default: in-cluster config, else ~/.kube/config.",
    )
    kube_context: str | None = Field(
        default=None, description="Kubeconfig context; default: the kubeconfig's current context."
    )
    resync_interval_s: float = Field(
        default=300.0, ge=1.0, description="Seconds between full passes (the correctness backstop)."
    )
    resync_jitter_s: float = Field(
        default=10.0, ge=0.0, description="Random delay added to each full pass, so replicas spread out."
    )
    watch_enabled: bool = Field(
        default=True, description="Watch pods to trigger early, targeted passes (a trigger only)."
    )
    watch_timeout_s: int = Field(default=300, ge=5, le=3600, description="Server-side timeout of one watch.")
    debounce_s: float = Field(
        default=0.3, ge=0.0, le=60.0, description="Wait after a pod change before the targeted pass."
    )
    chunk_pods: int = Field(
        default=2000,
        ge=1,
        description="A full pass reconciles pods in chunks of about this many (whole workflows); "
        "only one chunk of pods is held at a time.",
    )
    converged_recheck_s: float = Field(
        default=3600.0,
        ge=0.0,
        description="A full pass skips a pod whose step it found converged before, while neither the pod "
        "nor MLMD changed since, for at most this many seconds; then the step is compared with MLMD "
        "again. 0: compare every step on every pass.",
    )
    leader_election: bool = Field(default=True, description="Run passes only while holding the Lease.")
    lease_name: str = Field(default="kfp-metadata-reconciler", description="Name of the Lease.")
    lease_namespace: str = Field(
        default="kubeflow",
        validation_alias=AliasChoices("KFPMR_LEASE_NAMESPACE", "POD_NAMESPACE"),
        description="Namespace of the Lease (the Deployment's own; upstream Downward API: POD_NAMESPACE).",
    )
    identity: str | None = Field(
        default=None,
        validation_alias=AliasChoices("KFPMR_IDENTITY", "POD_NAME", "HOSTNAME"),
        description="This replica's name in the Lease; default: POD_NAME or HOSTNAME.",
    )
    lease_duration_s: float = Field(default=15.0, gt=0, description="Lease duration.")
    renew_deadline_s: float = Field(default=10.0, gt=0, description="Leader gives up if not renewed by then.")
    retry_period_s: float = Field(default=2.0, gt=0, description="Lease acquire/renew retry period.")
    health_host: str = Field(default="0.0.0.0", description="Address of /healthz, /readyz and /metrics.")
    health_port: int = Field(default=8080, ge=0, le=65535, description="Port of /healthz, /readyz, /metrics.")
    log_json: bool | None = Field(
        default=None, description="JSON log lines; default: JSON unless on a terminal."
    )
    log_level: str = Field(
        default="INFO",
        pattern="^(DEBUG|INFO|WARNING|ERROR)$",
        description="Log level (any case). Default INFO for `run`; the other commands log WARNING and "
        "above unless this is set. APScheduler's own lines show only at DEBUG.",
    )
    kfp_db_password: SecretStr | None = Field(
        default=None,
        description="Password of --from-kfp-db's user when its URL has none (never printed).",
    )
    argo_archive_password: SecretStr | None = Field(
        default=None,
        description="Password of --from-argo-archive's user when its URL has none (never printed).",
    )
    argo_archive_cluster_name: str | None = Field(
        default=None,
        description="Read only the Workflows Argo archived under this clusterName (Argo's default is "
        "'default'); default: every cluster's.",
    )
    event_interval_s: float = Field(
        default=600.0, ge=0, description="At most one Kubernetes Event per pod and reason in this time."
    )

    @model_validator(mode="after")
    def _check_lease_timing(self) -> Settings:
        if not self.retry_period_s < self.renew_deadline_s < self.lease_duration_s:
            raise ValueError(
                "lease timing must satisfy retry_period_s < renew_deadline_s < lease_duration_s "
                f"(got {self.retry_period_s}, {self.renew_deadline_s}, {self.lease_duration_s})"
            )
        return self

    @field_validator("mlmd_grpc_port", mode="before")
    @classmethod
    def _docker_link_port(cls, value: Any) -> Any:
        # Kubernetes injects METADATA_GRPC_SERVICE_PORT=tcp://<ip>:<port> into pods in the
        # namespace of a Service named metadata-grpc-service (docker-link variables); the
        # name is also the upstream writer's, so take the port from that form too.
        if isinstance(value, str) and value.startswith(("tcp://", "udp://")):
            return value.rsplit(":", 1)[-1]
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: Any) -> Any:
        return value.strip().upper() if isinstance(value, str) else value

    @field_validator("namespaces", mode="before")
    @classmethod
    def _split_namespaces(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [n.strip() for n in value.split(",") if n.strip()]
        return value

    @field_validator("mlmd_url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                parse_store_url(value)
            except StoreConfigError as exc:
                raise ValueError(str(exc)) from None
        return value

    def store_url(self) -> str:
        """The MLMD URL in force: explicit, else from the upstream gRPC names.

        Raises SettingsError when neither names a store: a silent default file would
        be a store nobody reads.
        """
        if self.mlmd_url:
            return self.mlmd_url
        if self.mlmd_grpc_host:
            scheme = "grpcs" if self.mlmd_tls_enabled else "grpc"
            return f"{scheme}://{self.mlmd_grpc_host}:{self.mlmd_grpc_port}"
        raise SettingsError(NO_STORE)

    def reconcile_options(self) -> ReconcileOptions:
        """The pure layer's options."""
        return ReconcileOptions(
            repository=ArtifactRepository(self.artifact_s3_endpoint, self.artifact_s3_bucket),
            record_cache_hits=self.record_cache_hits,
            record_non_kfp_pods=self.record_non_kfp_pods,
            write_batch_workflows=self.write_batch_workflows,
        )


def load_settings(**overrides: Any) -> Settings:
    """Settings from the environment plus explicit overrides; SettingsError lists every bad value."""
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        lines = []
        for error in exc.errors():
            where = ".".join(str(p) for p in error["loc"]) or "settings"
            lines.append(f"invalid setting {where}: {error['msg'].removeprefix('Value error, ')}")
        raise SettingsError("\n".join(lines)) from None
    except SourceError as exc:
        raise SettingsError(f"invalid setting: {exc}") from None
