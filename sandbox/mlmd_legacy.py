"""Run an MLMD gRPC server of a given ml-metadata version, old releases included.

``versioned_server(version, store_url)`` gives a stopped server with ``start()``, ``stop()``
and ``url``: for ``"current"`` the project's own :class:`store.server.MetadataServer` (this
process, the installed library), for an old release (``1.0.0``, ``1.5.0``, ``1.14.0``) a
:class:`LegacyMlmdServer` -- ``sandbox/mlmd_legacy_server.py`` in a child process running that
release's venv (``sandbox/mlmd_venvs.py``), on a free port, over a SQLite file or a MySQL
database. ``start()`` returns once the server answers a call.

By hand: ``python -m sandbox.mlmd_legacy serve 1.5.0 --store sqlite:///old.sqlite [--install]``
prints the server's ``grpc://`` URL and serves until Ctrl-C.
"""

from __future__ import annotations

import argparse
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Protocol

from sandbox.mlmd_venvs import LEGACY_VERSIONS, MlmdVenvError, ensure_venv, installed_venv, release
from store.connect import (
    StoreError,
    StoreTarget,
    StoreUnavailableError,
    connection_config,
    host_port,
    open_store,
    parse_store_url,
)
from store.server import MetadataServer

__all__ = [
    "CURRENT",
    "SERVER_VERSIONS",
    "LegacyMlmdServer",
    "LegacyServerError",
    "MlmdServer",
    "main",
    "versioned_server",
]

CURRENT = "current"
SERVER_VERSIONS: tuple[str, ...] = (*LEGACY_VERSIONS, CURRENT)
_SERVER_SCRIPT = Path(__file__).with_name("mlmd_legacy_server.py")


class LegacyServerError(Exception):
    """An old MLMD server could not be started (one line, with the server's own last words)."""


class MlmdServer(Protocol):
    """What callers need of an MLMD server of any version."""

    @property
    def url(self) -> str:
        """``grpc://host:port`` once started."""
        ...

    def start(self) -> int:
        """Start serving; the bound port."""
        ...

    def stop(self) -> None:
        """Stop serving."""
        ...


def _wait_until_answering(url: str, deadline: float, process: subprocess.Popen[bytes]) -> None:
    """Poll a cheap read (open_store's GetContextTypes) until it succeeds, the process dies, or time is up."""
    while True:
        try:
            open_store(url, timeout_s=max(0.1, min(2.0, deadline - time.monotonic())))
            return
        except StoreUnavailableError as exc:
            if process.poll() is not None:
                raise LegacyServerError("the server exited before answering") from None
            if time.monotonic() >= deadline:
                raise LegacyServerError(str(exc)) from None
            time.sleep(0.05)  # poll interval: the answer decides, not this pause


class LegacyMlmdServer:
    """The MLMD server of an old ml-metadata release, in a child process of that release's venv.

    ``store_url`` is ``sqlite:///file`` or ``mysql://...``; the old library creates the file,
    the database and its schema (of its own schema version) as its real server would. An
    existing store of an older schema is refused, unless ``upgrade_schema`` migrates it to the
    release's schema (as KFP's upgrade from 1.8 to 2.0.2 does). The child's stderr (the
    library's native log lines) goes to :attr:`log_path`.
    """

    def __init__(
        self,
        version: str,
        store_url: str,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        venv_root: Path | None = None,
        install: bool = False,
        upgrade_schema: bool = False,
    ) -> None:
        """Configure; ``install`` makes the venv on :meth:`start` if it is missing."""
        self.version = release(version).version
        self.upgrade_schema = upgrade_schema
        self._target: StoreTarget = parse_store_url(store_url)
        if not self._target.embedded or self._target.path == ":memory:":
            raise LegacyServerError(f"an MLMD server needs a sqlite file or mysql URL, not {self._target}")
        self._host = host
        self._port = port
        self._venv_root = venv_root
        self._install = install
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self.log_path: Path | None = None

    @property
    def store_url(self) -> str:
        """The store this server serves (with its password: do not log it)."""
        return self._target.url()

    @property
    def port(self) -> int:
        """The bound port once started."""
        return self._port

    @property
    def url(self) -> str:
        """``grpc://host:port`` for clients."""
        return f"grpc://{host_port(self._host, self._port)}"

    @property
    def running(self) -> bool:
        """Whether the child process is alive."""
        return self._process is not None and self._process.poll() is None

    def _venv(self) -> Path:
        if self._install:
            return ensure_venv(self.version, self._venv_root)
        found = installed_venv(self.version, self._venv_root)
        if found is None:
            raise MlmdVenvError(
                f"the ml-metadata {self.version} venv is not installed: run scripts/test.sh or "
                f"`python -m sandbox.mlmd_venvs install {self.version}`"
            )
        return found

    def start(self, timeout_s: float = 60.0) -> int:
        """Start the child, wait until it answers; the bound port.

        Raises :class:`MlmdVenvError` (no venv) or :class:`LegacyServerError`.
        """
        if self.running:
            return self._port
        python = self._venv() / "bin" / "python"
        config = connection_config(self._target)
        if self._target.kind == "sqlite":
            # The old libraries do not make the file's directory.
            Path(config.sqlite.filename_uri).parent.mkdir(parents=True, exist_ok=True)
        fd, log_name = tempfile.mkstemp(prefix=f"mlmd-{self.version}-", suffix=".log")
        self.log_path = Path(log_name)
        self._log = os.fdopen(fd, "wb")
        deadline = time.monotonic() + timeout_s
        # -I: only the venv's packages; the script's folder (sandbox/) must not shadow the
        # standard library (sandbox/selectors.py would).
        command = [str(python), "-I", str(_SERVER_SCRIPT), "--host", self._host, "--port", str(self._port)]
        process = subprocess.Popen(
            command + (["--upgrade-schema"] if self.upgrade_schema else []),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            env={**os.environ, "GRPC_VERBOSITY": "ERROR"},
        )
        self._process = process
        try:
            assert process.stdin is not None
            try:
                process.stdin.write(config.SerializeToString())
                process.stdin.close()
            except BrokenPipeError:
                pass  # it died at once; _read_port reports its last words
            self._port = self._read_port(process, deadline)
            _wait_until_answering(self.url, deadline, process)
        except LegacyServerError as exc:
            self.stop()
            raise LegacyServerError(f"ml-metadata {self.version} server over {self._target}: {exc}") from None
        return self._port

    def _read_port(self, process: subprocess.Popen[bytes], deadline: float) -> int:
        lines: queue.Queue[bytes] = queue.Queue()
        assert process.stdout is not None
        stdout = process.stdout
        threading.Thread(target=lambda: lines.put(stdout.readline()), daemon=True).start()
        try:
            line = lines.get(timeout=max(0.0, deadline - time.monotonic())).decode("utf-8", "replace")
        except queue.Empty:
            raise LegacyServerError("it did not start serving in time") from None
        if not line.startswith("serving "):
            process.wait(timeout=10)
            raise LegacyServerError(self._last_words() or f"it exited with code {process.returncode}")
        return int(line.rsplit(":", 1)[1])

    def _last_words(self) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        lines = [ln.strip() for ln in self.log_path.read_text("utf-8", "replace").splitlines() if ln.strip()]
        return lines[-1] if lines else ""

    def stop(self, grace_s: float = 10.0) -> None:
        """Stop the child (SIGTERM, then SIGKILL after ``grace_s``); idempotent."""
        process, self._process = self._process, None
        if process is not None:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=grace_s)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
            if process.stdout is not None:
                process.stdout.close()
        if self._log is not None:
            self._log.close()
            self._log = None
        if self.log_path is not None:
            self.log_path.unlink(missing_ok=True)
            self.log_path = None

    def kill(self) -> None:
        """SIGKILL the child, as a crash would; then clean up as :meth:`stop` does."""
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
        self.stop()

    def __enter__(self) -> LegacyMlmdServer:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"LegacyMlmdServer({self.version!r}, {self._target.redacted()!r}, url={self.url!r})"


def versioned_server(
    version: str,
    store_url: str,
    *,
    port: int = 0,
    venv_root: Path | None = None,
    install: bool = False,
    upgrade_schema: bool = False,
) -> MlmdServer:
    """A stopped MLMD server of ``version`` (``"current"`` or an old release) over ``store_url``.

    ``upgrade_schema`` lets an old release migrate an older schema to its own; the project's
    own server never migrates (``store/schema.py``).
    """
    if version == CURRENT:
        if upgrade_schema:
            raise LegacyServerError("the project's own MLMD server never migrates a schema")
        return MetadataServer(store_url, port=port)
    return LegacyMlmdServer(
        version, store_url, port=port, venv_root=venv_root, install=install, upgrade_schema=upgrade_schema
    )


def main(argv: Sequence[str] | None = None) -> int:
    """``serve VERSION --store URL``: run one server until SIGINT/SIGTERM; exit 1 if it cannot start."""
    parser = argparse.ArgumentParser(
        prog="python -m sandbox.mlmd_legacy", description="Run an MLMD gRPC server of a given version."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve one MLMD version over a store")
    serve.add_argument("version", help=", ".join(SERVER_VERSIONS))
    serve.add_argument("--store", required=True, help="sqlite:///file.sqlite or mysql://user@host/db")
    serve.add_argument("--port", type=int, default=0, help="port to bind (0: any free port)")
    serve.add_argument("--install", action="store_true", help="make the version's venv if it is missing")
    args = parser.parse_args(argv)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    signal.signal(signal.SIGINT, lambda signum, frame: stop.set())
    try:
        server = versioned_server(args.version, args.store, port=args.port, install=args.install)
        server.start()
    except (StoreError, MlmdVenvError, LegacyServerError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"MLMD {args.version} serving {parse_store_url(args.store)} at {server.url}", flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
