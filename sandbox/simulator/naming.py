"""Argo node ids, pod names and KFP-style generated names.

Follows ``pkg/apis/workflow/v1alpha1/workflow_types.go`` ``NodeID`` and
``workflow/util/pod_name.go`` (``PodName`` / ``GeneratePodName``).
"""

from __future__ import annotations

import functools
import random

_FNV32_OFFSET = 0x811C9DC5
_FNV32_PRIME = 0x01000193

# k8s validation: metadata.name <= 253 characters; Argo keeps room for "-<hash>"
_MAX_K8S_NAME = 253
_HASH_LEN = 10
MAX_POD_NAME_PREFIX = _MAX_K8S_NAME - _HASH_LEN - 1  # 242

# the alphabet of k8s' utilrand.String used for generateName suffixes
_GENERATE_NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


@functools.lru_cache(maxsize=1 << 16)
def fnv32a(text: str) -> int:
    """FNV-1a 32-bit hash of the UTF-8 bytes of ``text`` (Go ``hash/fnv.New32a``)."""
    h = _FNV32_OFFSET
    for byte in text.encode("utf-8"):
        h ^= byte
        h = (h * _FNV32_PRIME) & 0xFFFFFFFF
    return h


def node_id(workflow_name: str, node_name: str) -> str:
    """Argo's NodeID: the workflow name for the root node, else ``<wf>-<fnv32a(name)>``."""
    if node_name == workflow_name:
        return workflow_name
    return f"{workflow_name}-{fnv32a(node_name)}"


def pod_name(
    workflow_name: str,
    node_name: str,
    template_name: str,
    version: str = "v2",
    *,
    empty_template_gives_wf: bool = True,
) -> str:
    """The pod name Argo gives to a Pod node under pod-name format ``version``.

    v1: the node id. v2: ``<wf>-<templateName>-<fnv32a(nodeName)>``, the prefix cut
    to 242 characters; an empty template name (inline templates) gives ``<wf>-<hash>``
    from 3.6.0 on (``empty_template_gives_wf``).
    """
    if version == "v1":
        return node_id(workflow_name, node_name)
    if workflow_name == node_name:
        return workflow_name
    prefix = workflow_name
    if template_name or not empty_template_gives_wf:
        prefix = f"{workflow_name}-{template_name}"
    if len(prefix) > MAX_POD_NAME_PREFIX:
        prefix = prefix[:MAX_POD_NAME_PREFIX]
    return f"{prefix}-{fnv32a(node_name)}"


def generated_suffix(rng: random.Random, length: int = 5) -> str:
    """A deterministic ``generateName`` suffix drawn from k8s' name alphabet."""
    return "".join(rng.choice(_GENERATE_NAME_ALPHABET) for _ in range(length))


def node_id_from_pod(pod: dict) -> str | None:
    """The node id a pod belongs to: annotation ``node-id``, else NodeID(node-name)."""
    meta = pod.get("metadata", {})
    ann = meta.get("annotations") or {}
    if ann.get("workflows.argoproj.io/node-id"):
        return ann["workflows.argoproj.io/node-id"]
    name = ann.get("workflows.argoproj.io/node-name")
    wf = (meta.get("labels") or {}).get("workflows.argoproj.io/workflow")
    if name and wf:
        return node_id(wf, name)
    return None
