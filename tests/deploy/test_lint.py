"""checkov on the rendered manifests, hadolint on the Dockerfile, and the image's contract:
pinned base image and packages, runtime code only, the license."""

from __future__ import annotations

import ast
import fnmatch
import json
import re
import subprocess
import tomllib
from importlib import metadata
from pathlib import Path

import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.deploy import manifests
from tests.deploy.manifests import DEPLOY, OVERLAYS, REPO

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
RUNTIME_PACKAGES = {"controller", "history", "reconcile", "store"}
# Components that go into the reconciler's own kustomization (checked by checkov with it).
OUR_COMPONENTS = ("kfp-tls", "servicemonitor", "prometheusrule", "grafana-dashboard")

# Each deliberate deviation is suppressed in the Deployment itself, with its reason.
ALLOWED_SKIPS = {"CKV_K8S_11", "CKV_K8S_38", "CKV_K8S_43"}


def test_checkov_finds_no_failed_kubernetes_check(tmp_path: Path) -> None:
    for overlay in OVERLAYS:
        (tmp_path / f"{overlay}.yaml").write_text(manifests.rendered_text(f"overlays/{overlay}"))
    with_components = manifests.write_kustomization(
        tmp_path / "build" / "with-components",
        [DEPLOY / "overlays" / "kfp-dropin"],
        [DEPLOY / "components" / c for c in OUR_COMPONENTS],
    )
    (tmp_path / "kfp-dropin-with-components.yaml").write_text(manifests.kustomize(with_components))
    (tmp_path / "build" / "with-components" / "kustomization.yaml").unlink()
    proc = subprocess.run(
        [
            str(manifests.checkov()),
            "--directory",
            str(tmp_path),
            "--framework",
            "kubernetes",
            "--output",
            "json",
            "--skip-download",
        ],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert proc.stdout.strip(), f"checkov printed nothing (exit {proc.returncode}):\n{proc.stderr[-3000:]}"
    report = json.loads(proc.stdout)
    (result,) = report if isinstance(report, list) else [report]
    summary = result["summary"]
    failed = [
        f"{c['check_id']} {c['check_name']} {c['resource']} ({c['file_path']})"
        for c in result["results"]["failed_checks"]
    ]
    assert not failed, "\n".join(failed)
    assert summary["parsing_errors"] == 0
    assert summary["resource_count"] >= 8 * (len(OVERLAYS) + 1) and summary["passed"] > 100
    skipped = {c["check_id"] for c in result["results"]["skipped_checks"]}
    assert skipped <= ALLOWED_SKIPS, skipped - ALLOWED_SKIPS
    assert proc.returncode == 0


def test_hadolint_passes_on_the_dockerfile() -> None:
    proc = subprocess.run(
        [str(manifests.hadolint()), "--failure-threshold", "info", str(DEPLOY / "Dockerfile")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_hadolint_is_live(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get install -y gcc\n")
    proc = subprocess.run([str(manifests.hadolint()), str(bad)], capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and "DL3007" in proc.stdout


def _instructions() -> list[tuple[str, str]]:
    text = (DEPLOY / "Dockerfile").read_text().replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_image_contract_matches_the_manifests() -> None:
    steps = _instructions()
    # One base image, pinned by digest in a build ARG declared before the first FROM.
    args = [rest for word, rest in steps[: [w for w, _ in steps].index("FROM")] if word == "ARG"]
    (base,) = [a.split("=", 1)[1] for a in args if a.startswith("PYTHON_IMAGE=")]
    assert re.fullmatch(r"python:3\.11-slim-bookworm@sha256:[0-9a-f]{64}", base), base
    python = PYPROJECT["project"]["requires-python"]
    assert python == ">=3.11,<3.12", "the base image's Python must be the one pyproject.toml allows"
    froms = [rest for word, rest in steps if word == "FROM"]
    assert froms == ["${PYTHON_IMAGE} AS builder", "${PYTHON_IMAGE}"]
    final = steps[max(i for i, (w, _) in enumerate(steps) if w == "FROM") :]
    last = {word: rest for word, rest in final}
    script = next(iter(PYPROJECT["project"]["scripts"]))
    assert json.loads(last["ENTRYPOINT"]) == [script] == ["kfp-metadata-reconciler"]
    assert json.loads(last["CMD"]) == ["run"]
    objs = manifests.objects("kfp-dropin")
    pod = manifests.deployment(objs)["spec"]["template"]["spec"]
    uid, gid = last["USER"].split(":")
    assert (
        int(uid) == pod["securityContext"]["runAsUser"] and int(gid) == pod["securityContext"]["runAsGroup"]
    )
    port = manifests.container(objs)["ports"][0]["containerPort"]
    assert last["EXPOSE"] == str(port)
    # The final stage gets no compiler and no package manager run.
    final_runs = " ".join(rest for word, rest in final if word == "RUN")
    assert not re.search(r"\b(apt-get|apt|gcc|build-essential)\b", final_runs)
    # Both pip runs are held to the pins.
    runs = [rest for word, rest in steps if word == "RUN" and re.search(r"\bpip (wheel|install)\b", rest)]
    assert len(runs) == 2 and all("--constraint" in r for r in runs), runs
    assert "--no-index" in runs[1]


def _copied_sources() -> list[str]:
    """Every context path a COPY (not --from) or a RUN bind mount of the context reads."""
    sources = []
    for word, rest in _instructions():
        if word == "COPY" and "--from" not in rest:
            sources += [p for p in rest.split()[:-1] if not p.startswith("--")]
        if word == "RUN":
            sources += [m for m in re.findall(r"--mount=type=bind,source=([^,\s]+)", rest)]
    return sources


def _ignored_by_dockerignore(path: str) -> bool:
    patterns = [
        line.strip()
        for line in (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    result = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pat = pattern.lstrip("!").rstrip("/")
        if fnmatch.fnmatch(path, pat) or path.startswith(pat + "/") or fnmatch.fnmatch(path, pat + "/*"):
            result = not negate
    return result


def test_the_image_gets_the_runtime_code_only() -> None:
    copied = _copied_sources()
    for source in copied:
        assert (REPO / source).exists(), source
        assert not _ignored_by_dockerignore(source), f"{source} is used by the build but excluded"
        for file in (REPO / source).rglob("*.py") if (REPO / source).is_dir() else []:
            rel = file.relative_to(REPO).as_posix()
            assert not _ignored_by_dockerignore(rel), rel
    assert {s for s in copied if (REPO / s).is_dir()} == RUNTIME_PACKAGES
    assert {"pyproject.toml", "README.md", "LICENSE", "deploy/constraints.txt"} <= set(copied)
    for left_out in (".venv", "tests", "bench", "sandbox", ".git", "docs", "sandbox/apiserver.py"):
        assert _ignored_by_dockerignore(left_out), left_out
    # The runtime code does not need what the image leaves out when it is imported.
    for package in RUNTIME_PACKAGES:
        for file in (REPO / package).rglob("*.py"):
            for node in ast.parse(file.read_text()).body:
                names = []
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                    names = [node.module]
                for name in names:
                    assert name.split(".")[0] not in {"sandbox", "bench", "tests"}, f"{file}: imports {name}"


def _constraints() -> dict[str, str]:
    pins = {}
    for line in (DEPLOY / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, sep, version = line.strip().partition("==")
            assert sep and re.fullmatch(r"[\w.+!]+", version), f"not a pin: {line!r}"
            pins[canonicalize_name(name)] = version
    return pins


def _runtime_closure() -> set[str]:
    """The project's runtime dependencies and theirs, as installed here (markers evaluated)."""
    seen: set[str] = set()
    todo = [Requirement(r) for r in PYPROJECT["project"]["dependencies"]]
    while todo:
        req = todo.pop()
        name = canonicalize_name(req.name)
        if name in seen or (req.marker is not None and not req.marker.evaluate({"extra": ""})):
            continue
        seen.add(name)
        todo += [Requirement(r) for r in metadata.requires(req.name) or []]
    return seen


def test_constraints_pin_every_runtime_dependency() -> None:
    pins = _constraints()
    for spec in PYPROJECT["project"]["dependencies"]:
        req = Requirement(spec)
        version = pins.get(canonicalize_name(req.name))
        assert version is not None, f"{req.name} is not pinned in deploy/constraints.txt"
        assert req.specifier.contains(version), f"{req.name}=={version} is outside {req.specifier}"
    missing = _runtime_closure() - pins.keys()
    assert not missing, f"not pinned (run deploy/update-constraints.sh): {sorted(missing)}"
    test_only = {
        canonicalize_name(Requirement(r).name) for r in PYPROJECT["project"]["optional-dependencies"]["test"]
    }
    assert not test_only & pins.keys() - _runtime_closure(), "test tools in the image's pins"
    header = (DEPLOY / "constraints.txt").read_text().splitlines()[:2]
    assert any("deploy/update-constraints.sh" in line for line in header)
    assert (DEPLOY / "update-constraints.sh").stat().st_mode & 0o111


def test_license_is_the_one_pyproject_names() -> None:
    assert PYPROJECT["project"]["license"] == {"text": "Apache-2.0"}
    text = (REPO / "LICENSE").read_text()
    assert text.split()[:4] == ["Apache", "License", "Version", "2.0,"]
    assert "TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION" in text
    assert "APPENDIX: How to apply the Apache License to your work." in text


def test_kustomizations_name_only_existing_files() -> None:
    for kustomization in DEPLOY.rglob("kustomization.yaml"):
        doc = yaml.safe_load(kustomization.read_text())
        for key in ("resources", "bases", "patchesStrategicMerge", "components"):
            for entry in doc.get(key) or []:
                assert (kustomization.parent / entry).exists(), f"{kustomization}: {entry}"
