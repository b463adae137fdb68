"""The kustomizations build, and what they build is what the folders contain.

With `kubectl` on PATH (`kubectl kustomize`, kustomize v5 built in) the real
build runs and its output is validated again; without it the test checks that
every file a kustomization lists exists and parses, so a missing file still
fails. Either way every object is schema-checked by test_manifest_schemas.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.gitops.published_schemas import REPO, ManifestObject, load_objects, object_errors

KUSTOMIZATIONS = sorted(p.parent for p in (REPO / "metacontroller").rglob("kustomization.yaml")) + sorted(
    p.parent for p in (REPO / "argocd").rglob("kustomization.yaml")
)


def listed_files(folder: Path) -> list[Path]:
    kustomization = yaml.safe_load((folder / "kustomization.yaml").read_text())
    return [folder / entry for entry in kustomization.get("resources", [])]


def test_there_are_kustomizations_to_build():
    relative = {str(folder.relative_to(REPO)) for folder in KUSTOMIZATIONS}

    assert {"metacontroller", "argocd/workloads/carbonstat"} <= relative


@pytest.mark.parametrize("folder", KUSTOMIZATIONS, ids=lambda p: str(p.relative_to(REPO)))
def test_kustomization_lists_every_manifest_in_its_folder(folder):
    listed = {path.resolve() for path in listed_files(folder)}
    present = {p.resolve() for p in folder.glob("*.yaml") if p.name != "kustomization.yaml"}

    assert sorted(map(str, listed - present)) == [], "listed but missing"
    assert sorted(map(str, present - listed)) == [], "present but not listed"


@pytest.mark.parametrize("folder", KUSTOMIZATIONS, ids=lambda p: str(p.relative_to(REPO)))
def test_kustomization_builds_valid_objects(folder):
    if shutil.which("kubectl") is None:
        objects = load_objects(listed_files(folder))
    else:
        completed = subprocess.run(
            ["kubectl", "kustomize", str(folder)], capture_output=True, text=True, timeout=120, check=False
        )
        assert completed.returncode == 0, completed.stderr
        objects = [
            ManifestObject(path=folder / "kustomize-build", index=i, body=body)
            for i, body in enumerate(yaml.safe_load_all(completed.stdout))
            if body
        ]

    expected = len(load_objects(listed_files(folder)))
    invalid = {label: errors for label, errors in object_errors(objects).items() if errors}
    assert len(objects) == expected
    assert invalid == {}
