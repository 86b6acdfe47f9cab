"""Virtual environments holding old ml-metadata releases, for the old MLMD servers.

KFP clusters run MLMD servers 1.0.0 (KFP 1.7), 1.5.0 (KFP 1.8, 2.0.0-2.0.1) and 1.14.0
(KFP 2.0.2 on). PyPI has those releases' wheels for old CPythons only, so each gets a venv of
its own, made with that interpreter: ``<root>/<version>/``. ``sandbox/mlmd_legacy.py`` runs
``sandbox/mlmd_legacy_server.py`` in it.

The root is ``$KFPMR_MLMD_VENVS`` if set, else ``.venv/mlmd`` in a source checkout (ignored by
git; ``scripts/test.sh`` fills it), else ``~/.cache/kfp-metadata-reconciler/mlmd-venvs``.
Interpreters are found under pyenv (``$PYENV_ROOT/versions/3.8.*``) or on ``PATH``.

``python -m sandbox.mlmd_venvs install [VERSION ...]`` makes the venvs (all by default);
``python -m sandbox.mlmd_venvs list`` says which exist.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "LEGACY_VERSIONS",
    "LegacyRelease",
    "MlmdVenvError",
    "default_root",
    "ensure_venv",
    "find_interpreter",
    "installed_venv",
    "main",
    "release",
]

_INSTALLED_MARK = ".kfpmr-installed"
_PIP_TIMEOUT_S = 900.0


class MlmdVenvError(Exception):
    """An interpreter or venv for an old ml-metadata release is missing or cannot be made (one line)."""


@dataclass(frozen=True)
class LegacyRelease:
    """One old ml-metadata release: which CPython its wheels need, which schema it writes."""

    version: str
    python: str  # "3.8": the CPython minor version its PyPI wheels are built for
    schema_version: int
    kfp_releases: str

    def requirement(self) -> str:
        """The pip requirement that installs exactly this release."""
        return f"ml-metadata=={self.version}"


LEGACY_VERSIONS: dict[str, LegacyRelease] = {
    r.version: r
    for r in (
        LegacyRelease("1.0.0", "3.8", 6, "KFP 1.7"),
        LegacyRelease("1.5.0", "3.8", 7, "KFP 1.8, 2.0.0-2.0.1"),
        LegacyRelease("1.14.0", "3.10", 10, "KFP 2.0.2 - 2.17"),
    )
}


def release(version: str) -> LegacyRelease:
    """The :class:`LegacyRelease` of ``version``; :class:`MlmdVenvError` for one we do not know."""
    try:
        return LEGACY_VERSIONS[version]
    except KeyError:
        known = ", ".join(LEGACY_VERSIONS)
        raise MlmdVenvError(f"no old MLMD release {version!r} is known; known: {known}") from None


def default_root() -> Path:
    """Where the venvs live (see the module docstring)."""
    configured = os.environ.get("KFPMR_MLMD_VENVS")
    if configured:
        return Path(configured).expanduser().resolve()
    checkout = Path(__file__).resolve().parents[1]
    if (checkout / "pyproject.toml").is_file():
        return checkout / ".venv" / "mlmd"
    return Path.home() / ".cache" / "kfp-metadata-reconciler" / "mlmd-venvs"


def _version_key(path: Path) -> tuple[int, ...]:
    return tuple(int(part) if part.isdigit() else -1 for part in path.name.split("."))


def find_interpreter(python: str) -> Path:
    """A CPython ``python`` (e.g. ``"3.8"``) interpreter: pyenv's newest such, else one on PATH."""
    pyenv_root = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv")
    candidates = sorted(
        (p for p in (pyenv_root / "versions").glob(f"{python}.*") if p.name[len(python) + 1 :].isdigit()),
        key=_version_key,
        reverse=True,
    )
    for candidate in candidates:
        binary = candidate / "bin" / f"python{python}"
        if os.access(binary, os.X_OK):
            return binary
    on_path = shutil.which(f"python{python}")
    # A pyenv shim on PATH fails unless that version is installed: ask it.
    if on_path and _runs(Path(on_path)):
        return Path(on_path)
    raise MlmdVenvError(
        f"no Python {python} interpreter found (looked in {pyenv_root / 'versions'} and for "
        f"python{python} on PATH); install it, e.g. `pyenv install {python}`"
    )


def _runs(interpreter: Path) -> bool:
    try:
        done = subprocess.run(
            [str(interpreter), "-c", "pass"], capture_output=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def venv_dir(version: str, root: Path | None = None) -> Path:
    """The venv directory of ``version`` under ``root`` (default :func:`default_root`)."""
    return (root or default_root()) / release(version).version


def installed_venv(version: str, root: Path | None = None) -> Path | None:
    """The venv of ``version`` if it is completely installed, else None."""
    directory = venv_dir(version, root)
    mark = directory / _INSTALLED_MARK
    if mark.is_file() and mark.read_text().strip() == version and _python(directory).exists():
        return directory
    return None


def _python(directory: Path) -> Path:
    return directory / "bin" / "python"


@contextlib.contextmanager
def _install_lock(root: Path, version: str) -> Iterator[None]:
    """Only one process installs a version at a time (pytest workers, a sandbox)."""
    root.mkdir(parents=True, exist_ok=True)
    with open(root / f".{version}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _run_step(what: str, command: Sequence[str]) -> None:
    try:
        done = subprocess.run(
            list(command), capture_output=True, text=True, timeout=_PIP_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired:
        raise MlmdVenvError(f"{what}: no result within {_PIP_TIMEOUT_S:g} s") from None
    except OSError as exc:
        raise MlmdVenvError(f"{what}: {exc.strerror or exc}") from None
    if done.returncode != 0:
        # pip's last error line says what failed; its warnings before it do not.
        lines = [ln for ln in done.stderr.splitlines() if ln.strip() and not ln.startswith("WARNING")]
        detail = lines[-1].strip() if lines else f"exit code {done.returncode}"
        raise MlmdVenvError(f"{what}: {detail}")


def ensure_venv(version: str, root: Path | None = None, *, log: bool = False) -> Path:
    """The venv of ``version``, made first if it is missing or was left half-made.

    Runs ``<python> -m venv`` with the interpreter the release needs, then ``pip install
    ml-metadata==<version>`` (and with it the grpcio and protobuf it pins), then checks the
    library imports. Raises :class:`MlmdVenvError` (one line) when something is missing.
    """
    spec = release(version)
    root = root or default_root()
    ready = installed_venv(version, root)
    if ready is not None:
        return ready
    with _install_lock(root, version):
        ready = installed_venv(version, root)
        if ready is not None:  # another process finished it while we waited
            return ready
        interpreter = find_interpreter(spec.python)
        directory = venv_dir(version, root)
        started = time.monotonic()
        if directory.exists():
            shutil.rmtree(directory)  # left half-made by an interrupted install
        if log:
            print(f"making the ml-metadata {version} venv in {directory}", file=sys.stderr)
        _run_step(f"creating the venv {directory}", [str(interpreter), "-m", "venv", str(directory)])
        pip = [str(_python(directory)), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
        _run_step(f"installing {spec.requirement()} into {directory}", [*pip, spec.requirement()])
        check = "from ml_metadata.metadata_store.pywrap.metadata_store_extension import metadata_store"
        _run_step(f"importing ml-metadata {version}", [str(_python(directory)), "-I", "-c", check])
        (directory / _INSTALLED_MARK).write_text(version + "\n")
        if log:
            print(f"ml-metadata {version}: ready in {time.monotonic() - started:.0f} s", file=sys.stderr)
        return directory


def main(argv: Sequence[str] | None = None) -> int:
    """``install [VERSION ...]`` or ``list``; exit 1 with one line when an install fails."""
    parser = argparse.ArgumentParser(
        prog="python -m sandbox.mlmd_venvs", description="Venvs of old ml-metadata releases."
    )
    parser.add_argument("--root", type=Path, help=f"where the venvs live ({default_root()})")
    commands = parser.add_subparsers(dest="command", required=True)
    install = commands.add_parser("install", help="make the venvs (all known versions by default)")
    install.add_argument("versions", nargs="*", metavar="VERSION", help=", ".join(LEGACY_VERSIONS))
    commands.add_parser("list", help="show each known version and its venv")
    args = parser.parse_args(argv)
    versions = list(args.versions or LEGACY_VERSIONS) if args.command == "install" else list(LEGACY_VERSIONS)
    for version in versions:
        if args.command == "list":
            found = installed_venv(version, args.root)
            print(f"{version}\t{found if found else 'not installed'}")
            continue
        try:
            ensure_venv(version, args.root, log=True)
        except MlmdVenvError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
