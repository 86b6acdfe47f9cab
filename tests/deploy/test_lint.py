"""checkov on the rendered manifests, hadolint on the Dockerfile, and the image's contract."""

from __future__ import annotations

import fnmatch
import json
import re
import subprocess
import tomllib
from pathlib import Path

import yaml

from tests.deploy import manifests
from tests.deploy.manifests import DEPLOY, OVERLAYS, REPO

# Each deliberate deviation is suppressed in the Deployment itself, with its reason.
ALLOWED_SKIPS = {"CKV_K8S_11", "CKV_K8S_38", "CKV_K8S_43"}


def test_checkov_finds_no_failed_kubernetes_check(tmp_path: Path) -> None:
    for overlay in OVERLAYS:
        (tmp_path / f"{overlay}.yaml").write_text(manifests.rendered_text(f"overlays/{overlay}"))
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
    assert summary["resource_count"] >= 8 * len(OVERLAYS) and summary["passed"] > 100
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
    froms = [rest for word, rest in steps if word == "FROM"]
    assert len(froms) == 2 and all(f.startswith("python:3.11-slim") for f in froms)
    final = steps[max(i for i, (w, _) in enumerate(steps) if w == "FROM") :]
    last = {word: rest for word, rest in final}
    script = next(iter(tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]))
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


def test_dockerignore_keeps_what_the_build_copies() -> None:
    patterns = [
        line.strip()
        for line in (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]

    def ignored(path: str) -> bool:
        result = False
        for pattern in patterns:
            negate = pattern.startswith("!")
            pat = pattern.lstrip("!").rstrip("/")
            if fnmatch.fnmatch(path, pat) or path.startswith(pat + "/") or fnmatch.fnmatch(path, pat + "/*"):
                result = not negate
        return result

    copied = [rest.split()[0] for word, rest in _instructions() if word == "COPY" and "--from" not in rest]
    assert copied
    for source in copied:
        assert (REPO / source).exists(), source
        assert not ignored(source), f"{source} is COPY'd but excluded by Dockerfile.dockerignore"
        for file in (REPO / source).rglob("*.py") if (REPO / source).is_dir() else []:
            rel = file.relative_to(REPO).as_posix()
            assert not ignored(rel), rel
    for heavy in (".venv", "tests", "bench", ".git", "docs"):
        assert ignored(heavy), heavy
    packages = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    assert {p.rstrip("*") for p in packages["include"]} <= {s.rstrip("/").lstrip("./") for s in copied}


def test_kustomizations_name_only_existing_files() -> None:
    for kustomization in DEPLOY.rglob("kustomization.yaml"):
        doc = yaml.safe_load(kustomization.read_text())
        for key in ("resources", "bases", "patchesStrategicMerge", "components"):
            for entry in doc.get(key) or []:
                assert (kustomization.parent / entry).exists(), f"{kustomization}: {entry}"
