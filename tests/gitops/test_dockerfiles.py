"""The Dockerfiles copy only files that exist, pin what they install, run as
non-root without compilers, and their entry modules import from the copied
files alone.

No Docker engine runs here, so the images are never built. Instead the COPY
instructions are replayed into a temporary folder and the entry modules are
imported there in a fresh interpreter, with the repository off sys.path.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from tests.gitops.image_contents import (
    IMAGES,
    REPO,
    Image,
    copy_sources,
    dockerfile_instructions,
    first_party_closure,
    image_packages,
    is_context_copy,
    third_party_roots,
)

COMPILERS = ("build-essential", "gcc", "g++", "clang", "make", "cython")
IMAGE_IDS = [image.name for image in IMAGES]
# Entry modules whose app factory can run without a broker or network.
FACTORY_CALLS = {"engine.app": "create_app()", "hooks.app": "create_app()", "carbonstat.app": "create_app()"}
# Data files an image reads at run time, outside its factory call.
DATA_CHECKS = {
    "engine.app": [
        "from engine.carbon.trace import DEFAULT_ACTUAL, DEFAULT_FORECAST",
        "assert DEFAULT_ACTUAL.is_file() and DEFAULT_FORECAST.is_file(), DEFAULT_ACTUAL",
    ],
    "hooks.app": [
        "from hooks.config import HookConfig",
        "config = HookConfig()",
        "assert config.crd_path.is_file(), config.crd_path",
        "assert sorted(config.templates_dir.glob('*.yaml.j2')), config.templates_dir",
    ],
}


def runtime_stages(image: Image) -> set[int]:
    """Return the stages that are not the builder: those whose FROM is not named builder."""
    return {
        i.stage
        for i in dockerfile_instructions(image.dockerfile)
        if i.keyword == "FROM" and not i.arguments.lower().endswith(" as builder")
    }


def stage_context_copies(image: Image, destination: Path) -> None:
    """Copy what the Dockerfile's context COPYs into `destination`, which plays /app."""
    for instruction in dockerfile_instructions(image.dockerfile):
        if not is_context_copy(instruction):
            continue
        sources, target = copy_sources(instruction)
        if target.startswith("/"):
            continue  # outside the app folder, such as the requirements file of the builder
        for source in sources:
            origin = REPO / source
            place = destination / target
            if origin.is_dir():
                shutil.copytree(
                    origin, place, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
                )
            else:
                place.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(origin, place if not target.endswith("/") else place / origin.name)


@pytest.mark.parametrize("image", IMAGES, ids=IMAGE_IDS)
def test_every_copy_source_exists(image):
    copies = [i for i in dockerfile_instructions(image.dockerfile) if is_context_copy(i)]

    assert copies, f"{image.dockerfile.name} copies nothing from the build context"
    for instruction in copies:
        sources, _ = copy_sources(instruction)
        for source in sources:
            assert (REPO / source).exists(), f"{image.dockerfile.name}: COPY source {source} does not exist"


@pytest.mark.parametrize("image", IMAGES, ids=IMAGE_IDS)
def test_image_copies_every_package_it_imports(image):
    copied = {
        copy_sources(i)[0][0].rstrip("/")
        for i in dockerfile_instructions(image.dockerfile)
        if is_context_copy(i)
    }

    missing = [package for package in image_packages(image) if package not in copied]
    assert missing == []


def pinned_names(text: str) -> dict[str, str]:
    return dict(line.split("==") for line in text.splitlines() if line and not line.startswith("#"))


@pytest.mark.parametrize("image", IMAGES, ids=IMAGE_IDS)
def test_requirements_file_pins_every_imported_distribution(image):
    # Only the distributions the code imports directly must be listed: one
    # missing deeper in the tree is still resolved by pip at build time, so
    # an upgrade in requirements.txt that changes the tree breaks no image.
    pins = pinned_names(image.requirements.read_text())

    missing = sorted(third_party_roots(image) - set(pins))
    assert missing == [], (
        f"{image.requirements.relative_to(REPO)} lacks {missing}, which the image's code imports; "
        "run .venv/bin/python -m tests.gitops.image_contents"
    )
    assert all(version for version in pins.values())


def test_requirements_agree_with_project_pins():
    project_pins = {}
    for line in (REPO / "requirements.txt").read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split("==")
            project_pins[name.strip().lower()] = version.strip()

    for image in IMAGES:
        for line in image.requirements.read_text().splitlines():
            if "==" not in line:
                continue
            name, version = line.split("==")
            if name in project_pins:
                assert version == project_pins[name], f"{image.name}: {name}=={version}"


@pytest.mark.parametrize("image", IMAGES, ids=IMAGE_IDS)
def test_dockerfile_installs_its_requirements_file(image):
    copies = [copy_sources(i)[0] for i in dockerfile_instructions(image.dockerfile) if is_context_copy(i)]

    assert [str(image.requirements.relative_to(REPO))] in copies


@pytest.mark.parametrize("image", IMAGES, ids=IMAGE_IDS)
def test_images_use_python_slim_base(image):
    arguments = [i.arguments for i in dockerfile_instructions(image.dockerfile) if i.keyword == "ARG"]

    assert "PYTHON_IMAGE=python:3.11-slim-bookworm" in arguments


@pytest.mark.parametrize("image", IMAGES, ids=IMAGE_IDS)
def test_final_stages_run_as_non_root(image):
    instructions = dockerfile_instructions(image.dockerfile)
    stages = runtime_stages(image)
    # A stage built FROM another runtime stage inherits its USER.
    users = [i for i in instructions if i.keyword == "USER"]

    assert users, "no USER instruction"
    for user in users:
        assert user.arguments.split(":")[0] not in {"0", "root"}
    assert min(u.stage for u in users) == min(stages)


@pytest.mark.parametrize("image", IMAGES, ids=IMAGE_IDS)
def test_final_stages_install_no_compiler(image):
    stages = runtime_stages(image)
    runs = [
        i.arguments
        for i in dockerfile_instructions(image.dockerfile)
        if i.keyword == "RUN" and i.stage in stages
    ]

    for run in runs:
        for compiler in COMPILERS:
            assert compiler not in run.split(), f"final stage installs {compiler}: {run}"


@pytest.mark.parametrize("image", IMAGES, ids=IMAGE_IDS)
def test_command_runs_entry_modules(image):
    commands = " ".join(i.arguments for i in dockerfile_instructions(image.dockerfile) if i.keyword == "CMD")

    for module in image.entry_modules:
        assert module in commands


@pytest.mark.parametrize("image", IMAGES, ids=IMAGE_IDS)
def test_entry_modules_import_from_copied_files(image, tmp_path):
    stage_context_copies(image, tmp_path)
    checks = []
    for module in image.entry_modules:
        checks.append(f"import {module}")
        checks.append(f"assert {module}.__file__.startswith({str(tmp_path)!r}), {module}.__file__")
        if module in FACTORY_CALLS:
            checks.append(f"{module}.{FACTORY_CALLS[module]}")
        checks.extend(DATA_CHECKS.get(module, []))
    script = "\n".join(checks)

    completed = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "MPLCONFIGDIR": str(tmp_path / "mpl")},
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )

    assert completed.returncode == 0, completed.stderr[-3000:]


def test_first_party_closure_follows_imports():
    hooks = next(image for image in IMAGES if image.name == "hooks")

    closure = first_party_closure(hooks)

    assert "hooks.sync" in closure
    assert not any(module.startswith("engine") for module in closure)


def exposed_ports(image: Image) -> set[int]:
    return {
        int(port.split("/")[0])
        for i in dockerfile_instructions(image.dockerfile)
        if i.keyword == "EXPOSE"
        for port in i.arguments.split()
    }


def manifest_container_port(path: Path, name: str) -> int:
    for document in yaml.safe_load_all(path.read_text()):
        if document and document["kind"] == "Deployment" and document["metadata"]["name"] == name:
            return document["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"]
    raise LookupError(f"no Deployment {name} in {path}")


def test_exposed_ports_match_deployments():
    from hooks.children import CONSUMER_METRICS_PORT, ROUTER_PORT

    expected = {
        "engine": {manifest_container_port(REPO / "metacontroller" / "engine.yaml", "carbonrouter-engine")},
        "hooks": {manifest_container_port(REPO / "metacontroller" / "hooks.yaml", "carbonrouter-hooks")},
        "carbonstat": {
            manifest_container_port(
                REPO / "argocd" / "workloads" / "carbonstat" / "deployment-high.yaml", "carbonstat-high"
            )
        },
        "buffer": {ROUTER_PORT, CONSUMER_METRICS_PORT},
    }

    for image in IMAGES:
        assert exposed_ports(image) == expected[image.name], image.name


@pytest.mark.parametrize("image", [i for i in IMAGES if i.name != "buffer"], ids=lambda i: i.name)
def test_gunicorn_binds_exposed_port(image):
    instructions = dockerfile_instructions(image.dockerfile)
    words = json.loads(next(i.arguments for i in instructions if i.keyword == "CMD"))
    environment = " ".join(i.arguments for i in instructions if i.keyword == "ENV")

    if "--bind" in words:
        bind = words[words.index("--bind") + 1]
    else:
        config = (REPO / words[words.index("-c") + 1]).read_text()
        variable = re.search(r'bind = os.environ.get\("(\w+)"', config).group(1)
        bind = re.search(rf"{variable}=(\S+)", environment).group(1)
    assert int(bind.rsplit(":", 1)[1]) in exposed_ports(image)
