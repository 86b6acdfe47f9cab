"""The stand-in cluster of a benchmark, in a process of its own.

The API emulator and the Argo/KFP simulator run in a child process, as a real
API server runs apart from the controller: the controller's CPU time, peak RSS
and GIL are then its own, and the emulator's CPU time is measured separately
(its share of a pass is reported, so it can be seen not to be the bottleneck).

The parent talks to the child over a pipe (load pods, read request counts,
start a paced simulation, fetch the outputs log) and to the emulator over HTTP
with the real ``kubernetes`` client.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import resource
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

COMPLETE_TIMEOUT_S = 600.0


@dataclass(frozen=True)
class Visible:
    """When a step's outputs became readable at the API (child's ``time.monotonic()``)."""

    namespace: str
    workflow: str
    node_id: str
    pod_name: str
    monotonic: float


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class _Child:
    """Runs in the child: the emulator, the simulator, and the command loop."""

    def __init__(self) -> None:
        from sandbox.apiserver import ApiServer

        self.api = ApiServer().start()
        self.sim: Any = None
        self.feeder: threading.Thread | None = None
        self.fed = threading.Event()

    def load(self, workflows: int, steps: int, profile: str, completed: bool, seed: int) -> dict[str, Any]:
        from sandbox.simulator import generate_load

        started = time.perf_counter()
        generate_load(self.api.store, workflows, steps, profile, completed=completed, seed=seed)
        pods = self.api.store.list_bytes("pods")
        count = self.api.store.count("pods")
        return {
            "pods": count,
            "generate_s": time.perf_counter() - started,
            "avg_pod_bytes": round(len(pods) / count) if count else 0,
        }

    def paced(self, workflows: int, steps: int, profile: str, pace_s: float, every_s: float) -> None:
        """Run a simulator on the wall clock; submit one workflow every `every_s` seconds."""
        from sandbox.simulator import Simulator, chain_workflow

        sim = Simulator(self.api.store, profile, seed=7)
        self.sim = sim
        base = chain_workflow(steps, name="latency-chain")
        self.fed.clear()

        def feed() -> None:
            start = time.monotonic()
            for i in range(workflows):
                delay = start + i * every_s - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                sim.submit(base, "kubeflow")
            self.fed.set()

        sim.run(pace_s)
        self.feeder = threading.Thread(target=feed, name="feeder", daemon=True)
        self.feeder.start()

    def paced_done(self) -> bool:
        return self.sim is not None and self.fed.is_set() and not self.sim.active

    def outputs(self) -> list[Visible]:
        if self.sim is None:
            return []
        return [
            Visible(o.namespace, o.workflow, o.node_id, o.pod_name, o.monotonic) for o in self.sim.outputs_log
        ]

    def handle(self, command: str, args: tuple[Any, ...]) -> Any:
        if command == "port":
            return self.api.port
        if command == "kubeconfig":
            return str(self.api.write_kubeconfig(Path(args[0])))
        if command == "load":
            return self.load(*args)
        if command == "counts":
            return self.api.request_counts()
        if command == "traffic":
            # (verb, resource, view) -> (requests, body bytes), as plain tuples for the pipe.
            return {tuple(kind): tuple(served) for kind, served in self.api.traffic().items()}
        if command == "reset":
            self.api.reset_counts()
            return None
        if command == "cpu":
            return _cpu_s()
        if command == "rss_mb":
            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        if command == "paced":
            return self.paced(*args)
        if command == "paced_done":
            return self.paced_done()
        if command == "outputs":
            return self.outputs()
        if command == "stop_sim":
            if self.sim is not None:
                self.sim.stop()
            return None
        raise ValueError(f"unknown command {command!r}")


def _serve(conn: Any) -> None:
    child = _Child()
    conn.send(("ok", child.api.port))
    while True:
        try:
            command, args = conn.recv()
        except EOFError:
            break
        if command == "exit":
            conn.send(("ok", None))
            break
        try:
            conn.send(("ok", child.handle(command, args)))
        except Exception as exc:  # report it in the parent
            conn.send(("error", f"{type(exc).__name__}: {exc}"))
    with contextlib.suppress(Exception):
        child.api.stop()


class EmulatorProcess:
    """A child process serving the API emulator; use as a context manager."""

    def __init__(self) -> None:
        ctx = mp.get_context("spawn")
        self._conn, child_conn = ctx.Pipe()
        self._proc = ctx.Process(target=_serve, args=(child_conn,), name="bench-emulator", daemon=True)
        self._proc.start()
        self._lock = threading.Lock()
        status, self.port = self._conn.recv()
        assert status == "ok"

    def call(self, command: str, *args: Any) -> Any:
        with self._lock:
            self._conn.send((command, args))
            status, value = self._conn.recv()
        if status != "ok":
            raise RuntimeError(f"emulator process: {command}: {value}")
        return value

    def kubeconfig(self, path: Path) -> Path:
        return Path(self.call("kubeconfig", str(path)))

    def load(
        self, workflows: int, steps: int = 5, profile: str = "3.5", *, completed: bool = True, seed: int = 0
    ) -> dict[str, Any]:
        return self.call("load", workflows, steps, profile, completed, seed)

    def requests(self) -> int:
        """API requests served since the last reset (every verb and resource)."""
        return sum(self.call("counts").values())

    def counts(self) -> dict[tuple[str, str], int]:
        return self.call("counts")

    def traffic(self) -> dict[tuple[str, str, str], tuple[int, int]]:
        """(verb, resource, view) -> (requests, body bytes) served since the last reset.

        ``view`` is ``full``, ``metadata`` (PartialObjectMetadata/List), ``table`` or
        ``none`` (sandbox/traffic.py).
        """
        return self.call("traffic")

    def reset_counts(self) -> None:
        self.call("reset")

    def cpu_s(self) -> float:
        """CPU seconds the emulator process has used so far (all its threads)."""
        return self.call("cpu")

    def paced(self, workflows: int, steps: int, profile: str, pace_s: float, every_s: float) -> None:
        self.call("paced", workflows, steps, profile, pace_s, every_s)

    def wait_paced(self, timeout_s: float = COMPLETE_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout_s
        while not self.call("paced_done"):
            if time.monotonic() > deadline:
                raise TimeoutError("the paced simulation did not complete")
            time.sleep(0.2)

    def outputs(self) -> list[Visible]:
        return self.call("outputs")

    def stop_sim(self) -> None:
        self.call("stop_sim")

    def close(self) -> None:
        if self._proc.is_alive():
            with contextlib.suppress(Exception):
                self.call("exit")
            self._proc.join(10)
        if self._proc.is_alive():
            self._proc.terminate()
            self._proc.join(5)

    def __enter__(self) -> EmulatorProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
