"""How long to wait before trying again: the one backoff policy of every retry loop.

Kubernetes requests (controller/kube/retry.py), the controller's passes after a failed
one, and the pod watch after it broke all wait `RetryPolicy.delay(n)` before attempt
n + 1: exponential growth from `base_s`, capped at `max_s`, then jittered so that many
replicas or requests do not retry in step.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal

Jitter = Literal["full", "equal"]


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently to retry.

    The ceiling of the n-th wait (n from 0) is ``min(max_s, base_s * 2**n)``. With
    ``jitter="full"`` the wait is drawn uniformly between 0 and the ceiling; with
    ``"equal"`` between half the ceiling and the ceiling (never much shorter than
    planned). ``attempts`` bounds loops that give up (a request); loops that retry until
    stopped (passes, the watch) only ask for delays.
    """

    attempts: int = 6
    base_s: float = 0.2
    max_s: float = 10.0
    jitter: Jitter = "full"

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("RetryPolicy.attempts must be at least 1")
        if self.base_s < 0 or self.max_s < 0:
            raise ValueError("RetryPolicy delays must not be negative")

    def ceiling(self, attempt: int) -> float:
        """The longest wait before retry number ``attempt + 1`` (``attempt`` counts from 0)."""
        return min(self.max_s, self.base_s * (2 ** min(attempt, 30)))

    def delay(self, attempt: int) -> float:
        """A jittered wait before retry number ``attempt + 1``."""
        ceiling = self.ceiling(attempt)
        return random.uniform(0.0 if self.jitter == "full" else ceiling / 2, ceiling)
