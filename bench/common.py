"""What every scenario shares: the report, machine info, MLMD and API instrumentation."""

from __future__ import annotations

import json
import os
import platform
import resource
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reconcile.records import EventKind

REPORTS = Path(__file__).parent / "reports"
MYSQL_URL = "mysql://root@127.0.0.1:3306/{db}"


def python_loop_s(n: int = 5_000_000) -> float:
    """Seconds for a fixed pure-Python loop: how fast this machine was at the time.

    Shared 2-core machines here vary by 1.5x or more from one hour to the next; reports
    carry this so figures from two runs can be compared (ratios to bounds measured in
    the same run need no such correction).
    """
    started = time.perf_counter()
    total = 0
    for i in range(n):
        total += i
    return round(time.perf_counter() - started, 3)


def machine() -> dict[str, Any]:
    """Where the figures were measured, and how fast the machine was then."""
    return {
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "python_loop_s": python_loop_s(),
    }


def cpu_s() -> float:
    """CPU seconds (user + system) of this process so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def peak_rss_mb() -> float:
    """This process's peak resident set size in MB.

    Linux's VmHWM, which starts afresh at exec; ru_maxrss (the fallback) is carried
    over from the parent at fork, so a child of a big process would report the parent's.
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def ratio(value: float, bound: float) -> float | None:
    return round(value / bound, 3) if bound else None


@dataclass
class Report:
    """One scenario's JSON report."""

    scenario: str
    parameters: dict[str, Any]
    figures: dict[str, Any] = field(default_factory=dict)
    bounds: dict[str, Any] = field(default_factory=dict)
    ratios: dict[str, Any] = field(default_factory=dict)
    targets: dict[str, Any] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)

    def target(self, name: str, value: float | None, limit: float, at_least: bool = False) -> None:
        """Record whether `value` meets `limit` (<= by default, >= with `at_least`)."""
        met = value is not None and (value >= limit if at_least else value <= limit)
        self.targets[name] = {"value": value, "limit": limit, "op": ">=" if at_least else "<=", "met": met}

    def to_json(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "parameters": self.parameters,
            "figures": self.figures,
            "bounds": self.bounds,
            "ratios": self.ratios,
            "targets": self.targets,
            "details": self.details,
            "machine": machine(),
            "python_executable": sys.executable,
        }


def write_report(doc: dict[str, Any], out: Path | None) -> Path:
    path = out or REPORTS / f"{doc['scenario']}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=1, sort_keys=False) + "\n")
    return path


class CountingStore:
    """A thin wrapper around an MLMD store: counts reads and writes, times OUTPUT commits.

    Every ``get_*`` call is a read, every ``put_*`` call a write (one transaction).
    After each ``put_lineage_subgraph`` it notes, per execution key with an OUTPUT
    event in that call, the ``time.monotonic()`` when the call returned (the commit).
    A batched write (store/apply.py) links its executions to their run contexts in a later
    ``put_attributions_and_associations``: their outputs count as committed when that returns.
    """

    def __init__(self, store: Any) -> None:
        self._store = store
        self._lock = threading.Lock()
        self.calls: Counter[str] = Counter()
        self.output_committed: dict[str, float] = {}
        self._keys_by_id: dict[int, str] = {}
        self._unlinked: dict[int, str] = {}  # execution id -> key, OUTPUT written, not yet linked

    @property
    def reads(self) -> int:
        return sum(n for name, n in self.calls.items() if name.startswith("get_"))

    @property
    def writes(self) -> int:
        return sum(n for name, n in self.calls.items() if name.startswith("put_"))

    def reset(self) -> None:
        with self._lock:
            self.calls.clear()

    def __getattr__(self, name: str) -> Any:
        target = getattr(self._store, name)
        if not callable(target):
            return target

        def call(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                self.calls[name] += 1
            return target(*args, **kwargs)

        return call

    def put_lineage_subgraph(
        self,
        executions: list[Any],  # MLMD Execution, Artifact and Context protos
        artifacts: list[Any],
        contexts: list[Any],
        edges: list[Any],
        **kwargs: Any,
    ) -> Any:
        # Counted once it returns: the capability probe's call, which a server without the RPC
        # refuses (MLMD 1.0.0, 1.5.0), writes nothing.
        result = self._store.put_lineage_subgraph(executions, artifacts, contexts, edges, **kwargs)
        now = time.monotonic()
        execution_ids = result[0]
        with self._lock:
            self.calls["put_lineage_subgraph"] += 1
            for proto, new_id in zip(executions, execution_ids, strict=False):
                if proto.external_id:
                    self._keys_by_id[new_id] = proto.external_id
            for exec_index, _, event in edges:
                if event.type != int(EventKind.OUTPUT):
                    continue
                if exec_index is not None:
                    key = executions[exec_index].external_id
                else:
                    key = self._keys_by_id.get(event.execution_id, "")
                if not key or key in self.output_committed:
                    continue
                if contexts or exec_index is None:
                    self.output_committed[key] = now
                else:  # a batch's records: visible in the run context once linked
                    self._unlinked[execution_ids[exec_index]] = key
        return result

    def put_attributions_and_associations(self, attributions: list[Any], associations: list[Any]) -> Any:
        result = self._store.put_attributions_and_associations(attributions, associations)
        now = time.monotonic()
        with self._lock:
            self.calls["put_attributions_and_associations"] += 1
            for association in associations:
                key = self._unlinked.pop(association.execution_id, None)
                if key is not None and key not in self.output_committed:
                    self.output_committed[key] = now
        return result

    def learn_keys(self) -> None:
        """Map the ids of executions already in MLMD to their keys (for OUTPUT events on them)."""
        for proto in self._store.get_executions():
            if proto.external_id:
                self._keys_by_id[proto.id] = proto.external_id


class TimedKube:
    """Wraps a KubeClient: counts and times its lists and patches (bench instrumentation)."""

    def __init__(self, kube: Any) -> None:
        self._kube = kube
        self.seconds: Counter[str] = Counter()  # summed over calls, concurrent ones too
        self.busy: Counter[str] = Counter()  # wall time with at least one call in flight
        self.calls: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._in_flight: Counter[str] = Counter()
        self._busy_since: dict[str, float] = {}

    def __getattr__(self, name: str) -> Any:
        target = getattr(self._kube, name)
        if not callable(target) or name.startswith("watch"):
            return target

        def call(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            with self._lock:
                if not self._in_flight[name]:
                    self._busy_since[name] = started
                self._in_flight[name] += 1
            try:
                return target(*args, **kwargs)
            finally:
                ended = time.perf_counter()
                with self._lock:
                    self.seconds[name] += ended - started
                    self.calls[name] += 1
                    self._in_flight[name] -= 1
                    if not self._in_flight[name]:
                        self.busy[name] += ended - self._busy_since.pop(name)

        return call

    def reset(self) -> None:
        self.seconds.clear()
        self.busy.clear()
        self.calls.clear()


def percentile(values: list[float], q: float) -> float | None:
    """The q-th percentile (0-100), nearest-rank; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))
    return ordered[int(rank) - 1]


def timed(fn: Callable[[], Any]) -> tuple[Any, float, float]:
    """(result, wall s, cpu s of this process) of one call."""
    wall0, cpu0 = time.perf_counter(), cpu_s()
    result = fn()
    return result, time.perf_counter() - wall0, cpu_s() - cpu0
