"""The layering, read from every module's imports (ast: also imports inside functions).

- reconcile/ is pure: nothing of controller, store, sandbox or bench, of Kubernetes,
  MLMD or the network;
- only store/ imports ml_metadata; only controller/ imports kubernetes (bench/, a
  measuring tool, times the bare client against ours and is left out of that rule);
- nothing in controller/, reconcile/, store/, history/ imports sandbox/ or bench/;
- the pass (controller/reconcile_pass.py) makes no Kubernetes calls.

Programs that run in interpreters of their own are not modules of the project and are not
read: the old MLMD libraries' server (sandbox/mlmd_legacy_server.py, Python 3.8 with that
library) and the KFP pipeline sources (sandbox/pipelines/*.py, compiled by kfp 1.8.22 in a
venv of its own).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PRODUCT = ("controller", "reconcile", "store", "history")
PACKAGES = (*PRODUCT, "sandbox", "bench")
NETWORK = ("socket", "ssl", "http", "urllib.request", "urllib3", "requests", "grpc", "asyncio")


OTHER_INTERPRETERS = ("sandbox/mlmd_legacy_server.py", "sandbox/pipelines/[!_]*.py")


def _modules(package: str) -> list[Path]:
    return sorted(
        p
        for p in (ROOT / package).rglob("*.py")
        if "egg-info" not in str(p)
        and not any(p.relative_to(ROOT).match(pattern) for pattern in OTHER_INTERPRETERS)
    )


def _name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> Iterator[str]:
    """Every module `path` imports, anywhere in it (relative imports resolved, import_module too)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    module = _name(path) if path.is_relative_to(ROOT) else path.stem
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            yield base
            yield from (f"{base}.{alias.name}" for alias in node.names)
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute | ast.Name)
            and getattr(node.func, "attr", getattr(node.func, "id", "")) in ("import_module", "__import__")
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            yield node.args[0].value


def _hits(imported: str, forbidden: tuple[str, ...]) -> bool:
    return any(imported == f or imported.startswith(f + ".") for f in forbidden)


def violations(packages: tuple[str, ...], forbidden: tuple[str, ...]) -> list[str]:
    """`file: module` for each import of a forbidden module in the packages' files."""
    found = []
    for package in packages:
        for path in _modules(package):
            for imported in sorted(set(imports(path))):
                if _hits(imported, forbidden):
                    found.append(f"{path.relative_to(ROOT)}: {imported}")
    return found


def test_every_package_is_read() -> None:
    for package in PACKAGES:
        assert _modules(package), package
    # The reader sees imports inside functions and relative ones.
    assert "sandbox.demo" in set(imports(ROOT / "sandbox" / "command.py"))
    assert "sandbox.mlmd_legacy" in set(imports(ROOT / "sandbox" / "demo.py"))


def test_reconcile_is_pure() -> None:
    forbidden = ("controller", "store", "sandbox", "bench", "kubernetes", "ml_metadata", *NETWORK)
    assert violations(("reconcile",), forbidden) == []


@pytest.mark.parametrize("package", [p for p in PACKAGES if p != "store"])
def test_only_store_imports_ml_metadata(package: str) -> None:
    assert violations((package,), ("ml_metadata",)) == []


@pytest.mark.parametrize("package", ["reconcile", "store", "history", "sandbox"])
def test_only_controller_imports_kubernetes(package: str) -> None:
    assert violations((package,), ("kubernetes",)) == []


def test_the_product_imports_neither_its_test_rig_nor_its_benchmarks() -> None:
    assert violations(PRODUCT, ("sandbox", "bench")) == []


def test_the_pass_makes_no_kubernetes_calls() -> None:
    pass_module = ROOT / "controller" / "reconcile_pass.py"
    assert [m for m in imports(pass_module) if _hits(m, ("controller.kube", "kubernetes"))] == []


def test_a_violation_is_seen(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text(
        "def f():\n"
        "    from sandbox import demo\n"
        "    import importlib\n"
        "    importlib.import_module('bench.rig')\n"
    )
    assert {"sandbox", "sandbox.demo", "bench.rig"} <= set(imports(module))
