"""Which pods are ours to reconcile (docs/design.md, "One reconcile pass", step 2)."""

from __future__ import annotations

from enum import StrEnum

from reconcile import conventions as c
from reconcile.argo import PodView
from reconcile.options import ReconcileOptions


class Disposition(StrEnum):
    """What a pass does with a pod."""

    RECORD = "record"  # ours: create, or verify what a writer recorded earlier
    RECORD_CACHE_HIT = "record_cache_hit"  # optional CACHED execution; labels untouched
    SKIP_TFX = "tfx"
    SKIP_V2 = "kfp_v2"
    SKIP_CACHE_HIT = "cache_hit"
    SKIP_OPTED_OUT = "opted_out"
    SKIP_NON_KFP = "non_kfp"

    @property
    def skipped(self) -> bool:
        return self not in (Disposition.RECORD, Disposition.RECORD_CACHE_HIT)


def is_tfx_pod(pod: PodView) -> bool:
    """TFX pods have their own writer: the SDK-type label mentions tfx, or main runs TFX's entrypoint."""
    if "tfx" in pod.labels.get(c.SDK_TYPE_LABEL, ""):
        return True
    mains = [ct for ct in pod.containers if ct.get("name") == "main"]
    if len(mains) != 1:
        return False
    command = mains[0].get("command") or []
    return bool(command) and isinstance(command[-1], str) and command[-1].endswith(c.TFX_ENTRYPOINT_SUFFIX)


def is_kfp_pod(pod: PodView) -> bool:
    """The KFP SDK marks every template it compiles with `pipelines.kubeflow.org/` keys."""
    return any(k.startswith(c.KFP) for k in pod.labels) or any(k.startswith(c.KFP) for k in pod.annotations)


def classify(pod: PodView, options: ReconcileOptions) -> Disposition:
    """Decide whether a pod is recorded, verified or left alone."""
    if is_tfx_pod(pod):
        return Disposition.SKIP_TFX
    if pod.annotations.get(c.V2_COMPONENT_ANNOTATION) == "true":
        return Disposition.SKIP_V2
    if pod.labels.get(c.REUSED_FROM_CACHE_LABEL) == "true":
        # The cache webhook copied the *original* step's labels: never repair them.
        if options.record_cache_hits:
            return Disposition.RECORD_CACHE_HIT
        return Disposition.SKIP_CACHE_HIT
    if c.METADATA_WRITTEN_LABEL in pod.labels and c.EXECUTION_ID_LABEL not in pod.labels:
        return Disposition.SKIP_OPTED_OUT
    if not options.record_non_kfp_pods and not is_kfp_pod(pod):
        return Disposition.SKIP_NON_KFP
    return Disposition.RECORD
