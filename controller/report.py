"""What a pass saw and did: the report every trigger and command reads."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from reconcile.plan import WorkflowPlan
from reconcile.redact import redact

# progress(phase, done, total): phase "pods" while pods are read, "apply" while steps are written.
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class PodProblem:
    """One pod (or, its pod gone, one workflow node) that could not be reconciled."""

    namespace: str
    pod: str
    reason: str
    message: str

    def __post_init__(self) -> None:
        # Every log line, Event, metric and report that names the problem reads these
        # fields: mask any credential here, once (a URL in an annotation may carry one).
        for name in ("namespace", "pod", "reason", "message"):
            object.__setattr__(self, name, redact(str(getattr(self, name))))

    def __str__(self) -> str:
        return f"{self.namespace}/{self.pod}: {self.reason}: {self.message}"


@dataclass(frozen=True)
class PodPatch:
    """A JSON merge patch of our labels/annotations for one pod."""

    namespace: str
    pod: str
    patch: dict[str, Any]


@dataclass
class PassReport:
    """What a pass saw and did; `to_json` is the `--output json` object."""

    pods_seen: int = 0
    pods_unchanged: int = 0  # of pods_seen: skipped, converged in an earlier pass and unchanged since
    pods_skipped: Counter[str] = field(default_factory=Counter)
    errors: list[PodProblem] = field(default_factory=list)
    warnings: list[PodProblem] = field(default_factory=list)
    actions: Counter[str] = field(default_factory=Counter)
    pod_patches: list[PodPatch] = field(default_factory=list)
    pending_inputs: int = 0
    pending_outputs: int = 0
    transactions: int = 0
    duration_s: float = 0.0
    plans: list[WorkflowPlan] = field(default_factory=list, repr=False)
    merged_patches: int = 0  # patches of chunks merged without them: counted, not kept

    @property
    def patch_count(self) -> int:
        """Pod patches this pass planned (merged chunks' and its own)."""
        return self.merged_patches + len(self.pod_patches)

    def merge(self, part: PassReport, *, keep_plans: bool = False) -> None:
        """Add the report of one chunk of the pass; durations add up.

        With `keep_plans`, its plans and pod patches are kept too. Without, they are
        dropped (`patch_count` still counts the patches): their chunk was handled
        already, and a pass over a large cluster must not hold them all.
        """
        self.pods_seen += part.pods_seen
        self.pods_unchanged += part.pods_unchanged
        self.pods_skipped.update(part.pods_skipped)
        self.errors += part.errors
        self.warnings += part.warnings
        self.actions.update(part.actions)
        if keep_plans:
            self.plans += part.plans
            self.pod_patches += part.pod_patches
            self.merged_patches += part.merged_patches
        else:
            self.merged_patches += part.patch_count
        self.pending_inputs += part.pending_inputs
        self.pending_outputs += part.pending_outputs
        self.transactions += part.transactions
        self.duration_s += part.duration_s

    def to_json(self) -> dict[str, Any]:
        """The `--output json` object of `reconcile` and `verify`."""
        return {
            "pods_seen": self.pods_seen,
            "pods_skipped": sum(self.pods_skipped.values()),
            "pods_skipped_by_reason": dict(sorted(self.pods_skipped.items())),
            "errors": [e.__dict__ for e in self.errors],
            "warnings": [w.__dict__ for w in self.warnings],
            "actions": dict(sorted(self.actions.items())),
            "pod_patches": [p.__dict__ for p in self.pod_patches],
            "pending_inputs": self.pending_inputs,
            "pending_outputs": self.pending_outputs,
            "mlmd_transactions": self.transactions,
            "duration_s": round(self.duration_s, 3),
        }
