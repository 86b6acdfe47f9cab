"""Kubernetes access for the controller: lists, watch, patches and events, with our own retries.

`KubeClient` (client.py) is the one implementation of `KubeAccess` (access.py), the seam
the rest of the controller calls. The parts: errors.py (what can go wrong), retry.py (a
request's retries, on controller/backoff.py's policy), transport.py (raw JSON requests),
lists.py, watch.py, patches.py and events.py.
"""

from controller.backoff import RetryPolicy
from controller.kube.access import KubeAccess
from controller.kube.client import KubeClient, api_client_from
from controller.kube.errors import KubeApiError, KubeConfigError, KubeUnavailableError, WatchExpired
from controller.kube.events import COMPONENT
from controller.kube.lists import PodPages, RawList
from controller.kube.watch import WatchEvent

__all__ = [
    "COMPONENT",
    "KubeAccess",
    "KubeApiError",
    "KubeClient",
    "KubeConfigError",
    "KubeUnavailableError",
    "PodPages",
    "RawList",
    "RetryPolicy",
    "WatchEvent",
    "WatchExpired",
    "api_client_from",
]
