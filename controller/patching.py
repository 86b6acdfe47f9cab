"""Sending a pass's pod patches: a few at a time; a refused patch is that pod's error."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from controller.kube import KubeAccess, KubeApiError
from controller.report import PassReport, PodPatch, PodProblem

PATCH_CONCURRENCY = 8


def apply_pod_patches(
    kube: KubeAccess, report: PassReport, keep_going: Callable[[], bool] = lambda: True
) -> int:
    """Merge-patch our labels onto the pods; a refused patch is that pod's error, not the pass's.

    Returns the number of pods patched (a pod that is gone meanwhile is not an error).
    `keep_going` is asked before each patch (leadership may be lost mid-pass).
    """

    def one(patch: PodPatch) -> int:
        if not keep_going():
            return 0
        try:
            return int(kube.patch_pod_metadata(patch.namespace, patch.pod, patch.patch))
        except KubeApiError as exc:
            report.errors.append(PodProblem(patch.namespace, patch.pod, "pod_patch", exc.message))
            return 0

    # Patches are independent round trips; a few in flight hide the latency of each.
    with ThreadPoolExecutor(max_workers=PATCH_CONCURRENCY) as pool:
        return sum(pool.map(one, report.pod_patches))
