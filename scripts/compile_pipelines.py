"""Compile the project's KFP v1 pipelines (sandbox/pipelines/*.py) with the real KFP v1 compiler.

Run it through scripts/compile-pipelines.sh, which provides a venv with kfp==1.8.22 (it pins
old dependencies, so it never lives in the project's own venv). Each pipeline module names its
pipeline function ``PIPELINE`` and may set ``PIPELINE_CONF`` (a ``dsl.PipelineConf``); it is
compiled in V1_LEGACY mode, exactly as ``dsl-compile --mode V1_LEGACY`` would, to
sandbox/pipelines/compiled/<module>.yaml.

``--check`` compiles into a temporary folder instead and compares with the committed YAML,
ignoring only the ``pipelines.kubeflow.org/pipeline_compilation_time`` annotation; it exits 1
and names each pipeline that differs, is missing, or has no source any more.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SOURCES = REPO / "sandbox" / "pipelines"
COMPILED = SOURCES / "compiled"
COMPILATION_TIME = "pipelines.kubeflow.org/pipeline_compilation_time"


def source_names() -> list[str]:
    """The pipeline modules: every sandbox/pipelines/*.py but the package's own __init__."""
    return sorted(p.stem for p in SOURCES.glob("*.py") if p.stem != "__init__")


def import_source(name: str) -> ModuleType:
    """Import one pipeline module by path (it needs kfp, so it is never imported as a package)."""
    spec = importlib.util.spec_from_file_location(f"kfp_pipeline_source_{name}", SOURCES / f"{name}.py")
    if spec is None or spec.loader is None:
        raise SystemExit(f"{name}: cannot import {SOURCES / f'{name}.py'}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def compile_one(name: str, target: Path) -> None:
    """Compile pipeline ``name`` to ``target`` in V1_LEGACY mode."""
    import kfp
    from kfp import dsl

    module = import_source(name)
    pipeline = getattr(module, "PIPELINE", None)
    if pipeline is None:
        raise SystemExit(f"{name}: the module defines no PIPELINE")
    compiler = kfp.compiler.Compiler(mode=dsl.PipelineExecutionMode.V1_LEGACY)
    compiler.compile(pipeline, str(target), pipeline_conf=getattr(module, "PIPELINE_CONF", None))


def comparable(path: Path) -> Any:
    """A compiled workflow as data, without the one annotation that changes on every compile."""
    import yaml

    workflow = yaml.safe_load(path.read_text())
    workflow["metadata"]["annotations"].pop(COMPILATION_TIME, None)
    return workflow


def differences(fresh: Path, committed: Path) -> list[str]:
    """Names of pipelines whose fresh compile differs from the committed YAML (or has none)."""
    problems = []
    fresh_names = {p.stem for p in fresh.glob("*.yaml")}
    committed_names = {p.stem for p in committed.glob("*.yaml")}
    for name in sorted(committed_names - fresh_names):
        problems.append(f"{name}: compiled/{name}.yaml has no source sandbox/pipelines/{name}.py")
    for name in sorted(fresh_names - committed_names):
        problems.append(f"{name}: not compiled yet (no compiled/{name}.yaml)")
    for name in sorted(fresh_names & committed_names):
        if comparable(fresh / f"{name}.yaml") != comparable(committed / f"{name}.yaml"):
            problems.append(f"{name}: compiled/{name}.yaml differs from a fresh compile")
    return problems


def main(argv: list[str] | None = None) -> int:
    """Compile every pipeline (or the named ones); with --check, compare instead of writing."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("names", nargs="*", help="pipeline modules to compile (default: all)")
    parser.add_argument(
        "--check", action="store_true", help="compare a fresh compile with the committed YAML"
    )
    args = parser.parse_args(argv)
    names = args.names or source_names()
    unknown = sorted(set(names) - set(source_names()))
    if unknown:
        parser.error(f"no such pipeline module: {', '.join(unknown)}")
    # Pipelines load component files by repository-relative path, so that the
    # component_ref url the compiler records is the same on every machine.
    os.chdir(REPO)
    sys.path.insert(0, str(REPO))
    if not args.check:
        COMPILED.mkdir(exist_ok=True)
        for name in names:
            compile_one(name, COMPILED / f"{name}.yaml")
            print(f"compiled {name} -> {(COMPILED / f'{name}.yaml').relative_to(REPO)}")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp)
        for name in names:
            compile_one(name, fresh / f"{name}.yaml")
        if args.names:
            problems = [p for p in differences(fresh, COMPILED) if p.split(":")[0] in names]
        else:
            problems = differences(fresh, COMPILED)
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        print("run scripts/compile-pipelines.sh and commit sandbox/pipelines/compiled/", file=sys.stderr)
        return 1
    print(f"{len(names)} compiled pipelines match their sources")
    return 0


if __name__ == "__main__":
    sys.exit(main())
