"""Artifact URI rules: Argo artifact JSON -> the URI MLMD records.

KFP's UI and cache server read these URIs, so the s3 rule is exactly the
upstream writer's (docs/kfp-contract.md §1 Phase B.2). Key-only artifacts (Argo >= 3.0
reports only `s3.key`) are completed from the template's `archiveLocation`,
else from the configured default repository -- never `minio:///key`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from reconcile.errors import PodError, Reason

# Fields of an Argo artifact that are not a location (workflow_types.go).
_NON_LOCATION_FIELDS = frozenset(
    {
        "name",
        "path",
        "mode",
        "from",
        "globalName",
        "archive",
        "optional",
        "subPath",
        "recurseMode",
        "fromExpression",
        "artifactGC",
        "deleted",
        "archiveLogs",
    }
)
# Locations that name no object MLMD could link: constants and git checkouts.
_NO_URI_KINDS = frozenset({"raw", "git"})
_KNOWN_KINDS = frozenset({"s3", "gcs", "azure", "oss", "hdfs", "http", "artifactory"})
_AWS_S3 = re.compile(r"^.*s3.*amazonaws.com.*$")


@dataclass(frozen=True)
class ArtifactRepository:
    """Where key-only artifacts live when a template names no archiveLocation."""

    s3_endpoint: str = "minio-service.kubeflow:9000"
    s3_bucket: str = "mlpipeline"


def artifact_kind(artifact: dict[str, Any]) -> str | None:
    """The location kind of an Argo artifact (`s3`, `gcs`, ...), or None if it has none."""
    kinds = [k for k in artifact if k not in _NON_LOCATION_FIELDS]
    if not kinds:
        return None
    if len(kinds) > 1 or (kinds[0] not in _KNOWN_KINDS and kinds[0] not in _NO_URI_KINDS):
        raise PodError(
            Reason.UNKNOWN_ARTIFACT_KIND,
            f"artifact {artifact.get('name')!r} has unknown location {'/'.join(sorted(kinds))!r}",
        )
    return kinds[0]


def artifact_uri(
    artifact: dict[str, Any],
    archive_location: dict[str, Any] | None,
    repository: ArtifactRepository,
) -> str | None:
    """The URI to record for an Argo artifact, or None for raw/git/location-less ones."""
    kind = artifact_kind(artifact)
    if kind is None or kind in _NO_URI_KINDS:
        return None
    loc = artifact[kind]
    if not isinstance(loc, dict):
        raise PodError(
            Reason.UNKNOWN_ARTIFACT_KIND,
            f"artifact {artifact.get('name')!r}: {kind} location is not an object",
        )
    archive = (archive_location or {}).get(kind)
    archive = archive if isinstance(archive, dict) else {}
    name = artifact.get("name")

    def field(key: str, default: str = "") -> str:
        value = loc.get(key) or archive.get(key) or default
        if not isinstance(value, str):
            raise PodError(Reason.UNKNOWN_ARTIFACT_KIND, f"artifact {name!r}: {kind}.{key} is not a string")
        return value

    if kind == "s3":
        endpoint = field("endpoint", repository.s3_endpoint)
        bucket = field("bucket", repository.s3_bucket)
        key = field("key")
        if not bucket:
            raise PodError(
                Reason.NO_ARTIFACT_REPOSITORY,
                f"artifact {name!r} is key-only and neither its template's archiveLocation "
                "nor the configured artifact repository names a bucket",
            )
        scheme = "s3" if _AWS_S3.match(endpoint) else "minio"
        return f"{scheme}://{bucket}/{key}"
    if kind == "gcs":
        return f"gs://{_required(field('bucket'), name, 'gcs.bucket')}/{field('key')}"
    if kind == "oss":
        return f"oss://{_required(field('bucket'), name, 'oss.bucket')}/{field('key')}"
    if kind == "azure":
        endpoint = _required(field("endpoint"), name, "azure.endpoint").rstrip("/")
        return f"{endpoint}/{_required(field('container'), name, 'azure.container')}/{field('blob')}"
    if kind == "hdfs":
        addresses = loc.get("addresses") or archive.get("addresses") or []
        host = addresses[0] if isinstance(addresses, list) and addresses else ""
        return f"hdfs://{host}/{field('path').lstrip('/')}"
    # http and artifactory locations carry a complete URL.
    return _required(field("url"), name, f"{kind}.url")


def _required(value: str, name: Any, what: str) -> str:
    if not value:
        raise PodError(Reason.NO_ARTIFACT_REPOSITORY, f"artifact {name!r} has no {what}")
    return value
