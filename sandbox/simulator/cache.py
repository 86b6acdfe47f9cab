"""Emulation of KFP v1's cache webhook and cache watcher (``backend/src/cache``).

* **Webhook** (pod CREATE): for KFP pods with ``pipelines.kubeflow.org/cache_enabled=true``
  it reads the Argo template (``ARGO_TEMPLATE`` of ``containers[0]``, or the
  ``workflows.argoproj.io/template`` annotation on Argo <= 3.1), computes an execution
  cache key, and adds annotation ``execution_cache_key`` and label ``cache_id=""``.
  On a hit it also sets labels ``reused_from_cache=true``, ``metadata_written=true``,
  ``cache_id=<entry>`` and the original step's ``metadata_execution_id``, injects the
  cached ``workflows.argoproj.io/outputs`` annotation, replaces all containers by one
  ``main`` busybox ``echo`` container and drops the init containers.
* **Watcher**: when a pod that missed is ``Succeeded`` and labelled
  ``workflows.argoproj.io/completed=true``, it stores an entry (outputs annotation and
  ``metadata_execution_id`` label) and labels the pod ``cache_id=<entry>``.

On Argo >= 3.6 ``containers[0]`` (``wait``) has no ``ARGO_TEMPLATE``, so, as upstream,
nothing is cached. With task results (3.5+) the original pod has no outputs annotation,
so a hit injects an empty one, as upstream does.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from dataclasses import dataclass
from typing import Any

P = "pipelines.kubeflow.org/"
ANN_CACHE_KEY = P + "execution_cache_key"
LABEL_CACHE_ID = P + "cache_id"
LABEL_REUSED = P + "reused_from_cache"
LABEL_EXECUTION_ID = P + "metadata_execution_id"
LABEL_WRITTEN = P + "metadata_written"
LABEL_CACHE_ENABLED = P + "cache_enabled"
ANN_OUTPUTS = "workflows.argoproj.io/outputs"
ANN_TEMPLATE = "workflows.argoproj.io/template"
DEFAULT_CACHE_IMAGE = "gcr.io/google-containers/busybox"


@dataclass
class CacheEntry:
    """One row of the cache DB (``execution_caches``)."""

    id: int
    key: str
    namespace: str
    pod_name: str
    outputs: str
    execution_id: str
    max_cache_staleness: int


def _staleness_seconds(value: str | None) -> int:
    """ISO-8601 duration (``P0D``, ``P30D``, ``PT1H``) to seconds; -1 = unlimited."""
    if not value:
        return -1
    m = re.fullmatch(r"P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?", value.strip())
    if not m:
        return -1
    d, h, mi, s = (int(x) if x else 0 for x in m.groups())
    return ((d * 24 + h) * 60 + mi) * 60 + s


def argo_template(pod: dict[str, Any]) -> dict[str, Any] | None:
    """The Argo template the webhook sees: template annotation, else containers[0] env."""
    ann = (pod.get("metadata") or {}).get("annotations") or {}
    raw = ann.get(ANN_TEMPLATE)
    if raw is None:
        containers = (pod.get("spec") or {}).get("containers") or []
        if containers:
            for e in containers[0].get("env") or []:
                if e.get("name") == "ARGO_TEMPLATE":
                    raw = e.get("value")
    if not raw or raw == "offloaded":
        return None
    try:
        t = json.loads(raw)
    except ValueError:
        return None
    return t if isinstance(t, dict) else None


def cache_key(template: dict[str, Any]) -> str:
    """sha256 over what KFP's ``generateCacheKeyFromTemplate`` hashes."""
    inputs = template.get("inputs") or {}
    outputs = template.get("outputs") or {}
    key = {
        "inputArtifactNames": {a.get("name"): {} for a in inputs.get("artifacts") or []},
        "inputParameters": {p.get("name"): p.get("value") for p in inputs.get("parameters") or []},
        "outputArtifactsNames": {a.get("name"): {} for a in outputs.get("artifacts") or []},
        "outputParametersNames": {p.get("name"): {} for p in outputs.get("parameters") or []},
        "container": template.get("container") or template.get("resource") or {},
        "volumes": template.get("volumes") or [],
    }
    blob = json.dumps(key, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


class KfpCacheWebhook:
    """KFP cache server state shared by the simulators that use it (thread-safe)."""

    def __init__(self, image: str = DEFAULT_CACHE_IMAGE) -> None:
        self.image = image
        self.entries: dict[str, CacheEntry] = {}
        self.hits: list[tuple[str, str, int]] = []  # (namespace, pod, entry id)
        self._next_id = 1
        self._lock = threading.Lock()

    def mutate(self, sink: Any, namespace: str, pod: dict[str, Any],
               profile: Any = None) -> dict[str, Any] | None:
        """Mutate ``pod`` in place as the webhook would; return cached outputs on a hit."""
        meta = pod.setdefault("metadata", {})
        labels = meta.setdefault("labels", {})
        ann = meta.setdefault("annotations", {})
        if P + "kfp_sdk_version" not in labels:
            return None
        if labels.get(LABEL_CACHE_ENABLED) != "true" or labels.get(P + "enable_caching") == "false":
            return None
        if "tfx" in labels.get(P + "pipeline-sdk-type", "") or ann.get(P + "v2_component") == "true":
            return None
        tmpl = argo_template(pod)
        if tmpl is None:
            return None
        key = cache_key(tmpl)
        ann[ANN_CACHE_KEY] = key
        labels[LABEL_CACHE_ID] = ""
        staleness = _staleness_seconds(ann.get(P + "max_cache_staleness"))
        if staleness == 0:
            return None
        with self._lock:
            entry = self.entries.get(key)
        if entry is None:
            return None
        exec_id = entry.execution_id
        if not exec_id:
            original = sink.get("pods", entry.namespace, entry.pod_name)
            if original is not None:
                exec_id = ((original.get("metadata") or {}).get("labels") or {}).get(
                    LABEL_EXECUTION_ID, "")
        ann[ANN_OUTPUTS] = entry.outputs
        labels[LABEL_CACHE_ID] = str(entry.id)
        labels[LABEL_REUSED] = "true"
        labels[LABEL_EXECUTION_ID] = exec_id
        labels[LABEL_WRITTEN] = "true"
        spec = pod.setdefault("spec", {})
        spec["containers"] = [{
            "name": "main", "image": self.image,
            "command": ["echo", '"This step output is taken from cache."'],
            "resources": {},
        }]
        spec.pop("initContainers", None)
        spec.pop("affinity", None)
        with self._lock:
            self.hits.append((namespace, meta.get("name", ""), entry.id))
        try:
            parsed = json.loads(entry.outputs) if entry.outputs else {}
        except ValueError:
            parsed = {}
        return parsed if isinstance(parsed, dict) else {}

    def observe(self, sink: Any, namespace: str, pod: dict[str, Any]) -> CacheEntry | None:
        """The watcher: store a cache entry for a succeeded, completed pod that missed."""
        meta = pod.get("metadata") or {}
        labels = meta.get("labels") or {}
        ann = meta.get("annotations") or {}
        if labels.get(LABEL_CACHE_ID, None) != "" or ANN_CACHE_KEY not in ann:
            return None
        if labels.get("workflows.argoproj.io/completed") != "true":
            return None
        if (pod.get("status") or {}).get("phase") != "Succeeded":
            return None
        with self._lock:
            entry = CacheEntry(
                id=self._next_id, key=ann[ANN_CACHE_KEY], namespace=namespace,
                pod_name=meta.get("name", ""), outputs=ann.get(ANN_OUTPUTS, ""),
                execution_id=labels.get(LABEL_EXECUTION_ID, ""),
                max_cache_staleness=_staleness_seconds(ann.get(P + "max_cache_staleness")),
            )
            self._next_id += 1
            self.entries[entry.key] = entry
        sink.patch("pods", namespace, entry.pod_name,
                   {"metadata": {"labels": {LABEL_CACHE_ID: str(entry.id)}}})
        return entry
