"""What each container image needs, worked out from the code, and the Dockerfiles read back.

Each image runs one or two entry modules. `first_party_closure` follows their
imports through this repository's packages, and `third_party_roots` lists
the distributions that the packages holding those modules import. Imports inside functions are
followed too (the engine loads statsmodels and its carbon providers lazily),
except for the hooks image: the hooks import the engine in-process only for
the render command and tests, never in the served app. `locked_requirements` expands the roots to every
distribution they pull in, pinned to the versions in this virtualenv, which
requirements.txt pins; those are the files under docker/requirements/.
The tests require every directly imported distribution to be listed, so
regenerate the files after changing requirements.txt or an image's imports:

    .venv/bin/python -m tests.gitops.image_contents
"""

from __future__ import annotations

import ast
import importlib.metadata as metadata
import json
import re
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[2]
FIRST_PARTY = ("engine", "hooks", "buffer", "carbonstat")
REQUIREMENTS_DIR = REPO / "docker" / "requirements"


@dataclass(frozen=True)
class Image:
    """One container image: its Dockerfile, entry modules and the servers its command runs."""

    name: str
    entry_modules: tuple[str, ...]
    server_distributions: tuple[str, ...] = ("gunicorn",)
    follow_lazy_imports: bool = True

    @property
    def dockerfile(self) -> Path:
        return REPO / "docker" / f"{self.name}.Dockerfile"

    @property
    def requirements(self) -> Path:
        return REQUIREMENTS_DIR / f"{self.name}.txt"


IMAGES = (
    Image(name="engine", entry_modules=("engine.app",)),
    Image(name="hooks", entry_modules=("hooks.app",), follow_lazy_imports=False),
    Image(name="buffer", entry_modules=("buffer.router", "buffer.consumer")),
    Image(name="carbonstat", entry_modules=("carbonstat.app",)),
)


def module_file(module: str, root: Path = REPO) -> Path | None:
    """Return the source file of a first-party module under `root`, or None if it has none."""
    base = root.joinpath(*module.split("."))
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    if base.with_suffix(".py").is_file():
        return base.with_suffix(".py")
    return None


def module_imports(path: Path, module: str, *, lazy: bool) -> set[str]:
    """Return the absolute module names `path` imports; with `lazy`, also those inside functions."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree) if lazy else _module_level_nodes(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _resolve_from(node, package)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def _module_level_nodes(tree: ast.Module):
    """Yield statements executed on import: the body, descending into if/try/with but not into defs."""
    pending = list(tree.body)
    while pending:
        node = pending.pop()
        yield node
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            pending.extend(node.orelse)
        elif isinstance(node, ast.If | ast.With):
            pending.extend(node.body)
            pending.extend(getattr(node, "orelse", []))
        elif isinstance(node, ast.Try):
            for block in (node.body, node.orelse, node.finalbody, *[h.body for h in node.handlers]):
                pending.extend(block)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _resolve_from(node: ast.ImportFrom, package: str) -> str:
    if node.level == 0:
        return node.module or ""
    parts = package.split(".")
    anchor = parts[: len(parts) - (node.level - 1)]
    return ".".join(anchor + ([node.module] if node.module else []))


def first_party_closure(image: Image, root: Path = REPO) -> dict[str, Path]:
    """Map every first-party module the image's entry modules load to its file under `root`."""
    seen: dict[str, Path] = {}
    pending = list(image.entry_modules)
    while pending:
        module = pending.pop()
        if module in seen or module.split(".")[0] not in FIRST_PARTY:
            continue
        path = module_file(module, root)
        if path is None:
            continue  # a name imported from a module, not a module itself
        seen[module] = path
        parents = [".".join(module.split(".")[:i]) for i in range(1, module.count(".") + 1)]
        pending.extend(parents)
        pending.extend(module_imports(path, module, lazy=image.follow_lazy_imports))
    return seen


def image_packages(image: Image) -> list[str]:
    """Return the first-party packages the image must contain: those its entry modules reach."""
    return sorted({module.split(".")[0] for module in first_party_closure(image)})


def third_party_roots(image: Image) -> set[str]:
    """Return the canonical names of the distributions the image's packages import, plus its server.

    Every module of every copied package counts, with its lazy imports,
    because modules loaded by name at run time (carbon providers, policies)
    are invisible to the import graph.
    """
    import_names = metadata.packages_distributions()
    roots = {canonicalize_name(name) for name in image.server_distributions}
    for package in image_packages(image):
        for path in sorted((REPO / package).rglob("*.py")):
            module = ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
            for imported in module_imports(path, module, lazy=True):
                top = imported.split(".")[0]
                if top in FIRST_PARTY or top in sys.stdlib_module_names or top == "__future__":
                    continue
                if top not in import_names:
                    raise LookupError(
                        f"{path}: no installed distribution provides {top!r}; add it to requirements.txt"
                    )
                roots.update(canonicalize_name(name) for name in import_names[top])
    return roots


def locked_requirements(roots: set[str]) -> dict[str, str]:
    """Expand `roots` to every distribution they need at run time, pinned to the installed version."""
    pinned: dict[str, str] = {}
    pending = sorted(roots)
    while pending:
        name = pending.pop()
        if name in pinned:
            continue
        distribution = metadata.distribution(name)
        pinned[name] = distribution.version
        for line in distribution.requires or []:
            requirement = Requirement(line)
            if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
                continue
            pending.append(canonicalize_name(requirement.name))
    return dict(sorted(pinned.items()))


def render_requirements(image: Image) -> str:
    """Return the text of the image's pinned requirements file."""
    header = (
        f"# Run-time dependencies of the {image.name} image, every transitive one pinned.\n"
        "# Generated by `python -m tests.gitops.image_contents` from requirements.txt's pins; do not edit.\n"
    )
    pins = locked_requirements(third_party_roots(image))
    return header + "".join(f"{name}=={version}\n" for name, version in pins.items())


@dataclass(frozen=True)
class Instruction:
    """One Dockerfile instruction: keyword, its arguments and the stage it belongs to."""

    keyword: str
    arguments: str
    stage: int


def dockerfile_instructions(path: Path) -> list[Instruction]:
    """Parse a Dockerfile into instructions, joining continuation lines and dropping comments."""
    instructions: list[Instruction] = []
    stage = -1
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        pending = f"{pending} {line}".strip()
        if pending.endswith("\\"):
            pending = pending[:-1]
            continue
        keyword, _, arguments = pending.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            stage += 1
        instructions.append(Instruction(keyword=keyword, arguments=arguments.strip(), stage=stage))
        pending = ""
    return instructions


def copy_sources(instruction: Instruction) -> tuple[list[str], str]:
    """Return the (sources, destination) of a COPY from the build context; options are dropped."""
    words = _split_arguments(instruction.arguments)
    words = [word for word in words if not word.startswith("--")]
    return words[:-1], words[-1]


def _split_arguments(arguments: str) -> list[str]:
    if arguments.startswith("["):
        return json.loads(arguments)
    return shlex.split(arguments)


def is_context_copy(instruction: Instruction) -> bool:
    """Tell whether a COPY reads the build context (not another stage)."""
    return instruction.keyword == "COPY" and not re.search(r"--from=", instruction.arguments)


def main() -> None:
    """Write docker/requirements/<image>.txt for every image."""
    REQUIREMENTS_DIR.mkdir(parents=True, exist_ok=True)
    for image in IMAGES:
        image.requirements.write_text(render_requirements(image))
        print(f"wrote {image.requirements.relative_to(REPO)}")


if __name__ == "__main__":
    main()
