"""Validate Kubernetes objects against the published schema of their kind.

Every object in `metacontroller/` and `argocd/` goes through `object_errors`,
which picks the checker by apiVersion and kind:

- built-in kinds: kubernetes-validate's strict schemas (unknown fields fail);
- CRD kinds (TrafficSchedule, CompositeController, AppProject): the CRD's
  openAPIV3Schema with jsonschema, plus the pruning check that the API server
  applies, since a field the schema does not declare would silently vanish;
- KEDA and Istio kinds: cloudcoil's generated models with `extra="forbid"`;
- Argo CD Application: @kubernetes-models/argo-cd run by Node (see
  `argocd_models/`), because Argo CD's published Application CRD is 400 kB,
  plus an unknown-field check along that package's type declarations.

A kind with no checker is an error, so a new kind cannot slip through unchecked.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import jsonschema
import kubernetes_validate
import pydantic
import yaml
from filelock import FileLock

from tests.gitops.argocd_model_fields import TypeDeclarations, argocd_types_folder

REPO = Path(__file__).resolve().parents[2]
VENDORED_SCHEMAS = REPO / "tests" / "schemas"
OUR_CRD = REPO / "metacontroller" / "crd-trafficschedule.yaml"
NODE_PROJECT = Path(__file__).resolve().parent / "argocd_models"

# The oldest and newest Kubernetes releases the manifests are meant for:
# Istio's networking.istio.io/v1 needs Istio 1.22, which supports 1.27 and later.
KUBERNETES_VERSIONS = ("1.30", "1.37")

CRD_FILES = (
    OUR_CRD,
    VENDORED_SCHEMAS / "metacontroller-compositecontroller-crd.yaml",
    VENDORED_SCHEMAS / "argocd-appproject-crd.yaml",
)
# The validators check types and required fields only; unknown fields are
# found separately from the same package's type declarations.
NODE_CHECKED_KINDS = {("argoproj.io/v1alpha1", "Application")}


@dataclass(frozen=True)
class ManifestObject:
    """One YAML document of a manifest file, with where it came from."""

    path: Path
    index: int
    body: dict

    @property
    def label(self) -> str:
        relative = self.path.relative_to(REPO) if self.path.is_relative_to(REPO) else self.path
        name = (self.body.get("metadata") or {}).get("name", "?")
        return f"{relative}#{self.index} {self.body.get('kind')}/{name}"


def yaml_files(*folders: Path) -> list[Path]:
    """Return every .yaml/.yml file under `folders`, sorted."""
    found: list[Path] = []
    for folder in folders:
        found.extend(p for p in folder.rglob("*") if p.suffix in {".yaml", ".yml"})
    return sorted(found)


def load_objects(paths: Iterable[Path]) -> list[ManifestObject]:
    """Parse every document of every file; kustomization files are not objects and are skipped."""
    objects: list[ManifestObject] = []
    for path in paths:
        if path.name in {"kustomization.yaml", "kustomization.yml"}:
            continue
        for index, body in enumerate(yaml.safe_load_all(path.read_text())):
            if body is None:
                continue
            if not isinstance(body, dict):
                raise ValueError(
                    f"{path}#{index}: a manifest document must be a mapping, got {type(body).__name__}"
                )
            objects.append(ManifestObject(path=path, index=index, body=body))
    return objects


def load_crd_schemas(paths: Iterable[Path] = CRD_FILES) -> dict[tuple[str, str], dict]:
    """Map (apiVersion, kind) to the openAPIV3Schema of every version in the CRD files."""
    schemas: dict[tuple[str, str], dict] = {}
    for path in paths:
        for crd in yaml.safe_load_all(path.read_text()):
            if not crd or crd.get("kind") != "CustomResourceDefinition":
                continue
            group = crd["spec"]["group"]
            kind = crd["spec"]["names"]["kind"]
            for version in crd["spec"]["versions"]:
                schemas[(f"{group}/{version['name']}", kind)] = version["schema"]["openAPIV3Schema"]
    return schemas


def builtin_errors(body: dict) -> list[str]:
    """Validate a built-in kind with kubernetes-validate's strict schemas for each target release."""
    errors = []
    for version in KUBERNETES_VERSIONS:
        try:
            kubernetes_validate.validate(body, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            where = "/".join(str(part) for part in exc.path) or "/"
            errors.append(f"Kubernetes {version}: {where}: {exc.message}")
    return errors


def is_builtin(body: dict) -> bool:
    """Tell whether kubernetes-validate ships a schema for this object's kind."""
    try:
        kubernetes_validate.validate(body, KUBERNETES_VERSIONS[-1], strict=True)
    except kubernetes_validate.SchemaNotFoundError:
        return False
    except kubernetes_validate.ValidationError:
        return True
    return True


def openapi_errors(body: dict, schema: dict) -> list[str]:
    """Validate against a CRD's openAPIV3Schema, then report fields the API server would prune."""
    validator = jsonschema.Draft4Validator(schema)
    errors = [
        f"/{'/'.join(str(part) for part in error.absolute_path)}: {error.message}"
        for error in sorted(validator.iter_errors(body), key=lambda e: list(map(str, e.absolute_path)))
    ]
    errors.extend(
        f"{path}: field is not in the schema, the API server would drop it"
        for path in unknown_fields(body, schema)
    )
    return errors


def unknown_fields(value: object, schema: dict, path: str = "") -> Iterator[str]:
    """Yield the paths of fields that structural pruning would remove from `value`.

    Mirrors the API server: an object node keeps only its declared properties
    unless it has additionalProperties or x-kubernetes-preserve-unknown-fields;
    ObjectMeta at the root is validated by the API server separately.
    """
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return
    if isinstance(value, dict):
        properties = schema.get("properties")
        additional = schema.get("additionalProperties")
        for key, child in value.items():
            child_path = f"{path}/{key}"
            if path == "" and key == "metadata":
                continue
            if properties is not None and key in properties:
                yield from unknown_fields(child, properties[key], child_path)
            elif isinstance(additional, dict):
                yield from unknown_fields(child, additional, child_path)
            elif additional is True:
                continue
            elif properties is not None or schema.get("type") == "object":
                yield child_path
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for position, item in enumerate(value):
            yield from unknown_fields(item, schema["items"], f"{path}/{position}")


def keda_errors(body: dict) -> list[str]:
    """Validate a keda.sh object with cloudcoil's generated KEDA models, rejecting unknown fields."""
    from cloudcoil.models.keda import v1alpha1 as keda

    model = getattr(keda, body.get("kind", ""), None)
    if model is None:
        return [f"cloudcoil-models-keda has no model for kind {body.get('kind')!r}"]
    try:
        model.model_validate(body, strict=True, extra="forbid")
    except pydantic.ValidationError as exc:
        return [f"/{'/'.join(map(str, err['loc']))}: {err['msg']}" for err in exc.errors()]
    return []


def istio_errors(body: dict) -> list[str]:
    """Validate a networking.istio.io object with cloudcoil's Istio models, rejecting unknown fields."""
    from cloudcoil.models.istio.networking import v1 as istio_v1

    if body.get("apiVersion") != "networking.istio.io/v1":
        return [f"use networking.istio.io/v1 (Istio 1.22 and later), not {body.get('apiVersion')}"]
    model = getattr(istio_v1, body.get("kind", ""), None)
    if model is None:
        return [f"cloudcoil-models-istio has no model for kind {body.get('kind')!r}"]
    try:
        model.model_validate(body, strict=True, extra="forbid")
    except pydantic.ValidationError as exc:
        return [f"/{'/'.join(map(str, err['loc']))}: {err['msg']}" for err in exc.errors()]
    return []


def node_model_errors(bodies: list[dict]) -> list[list[str]]:
    """Validate Argo CD objects with the Node models; one error list per object."""
    if not bodies:
        return []
    workdir = node_workdir()
    completed = subprocess.run(
        ["node", "validate.mjs"],
        cwd=workdir,
        input=json.dumps(bodies),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(
            f"node validate.mjs failed (exit {completed.returncode}): {completed.stderr.strip()}"
        )
    return json.loads(completed.stdout)


def node_workdir() -> Path:
    """Install the pinned Node models once into a cache folder and return it.

    The install uses `npm ci` against the committed lock file, so every run
    checks against the same package version. The cache lives outside the
    repository (CARBONROUTER_NODE_CACHE overrides the location).
    """
    if shutil.which("node") is None or shutil.which("npm") is None:
        raise RuntimeError("node and npm are needed to validate Argo CD Applications; install nodejs")
    cache = Path(
        os.environ.get("CARBONROUTER_NODE_CACHE", Path.home() / ".cache" / "carbonrouter-argocd-models")
    )
    cache.parent.mkdir(parents=True, exist_ok=True)
    expected_lock = (NODE_PROJECT / "package-lock.json").read_text()
    installed_lock = cache / "package-lock.json"

    # Several pytest runs may share the cache, so one installs while the others wait.
    with FileLock(f"{cache}.lock", timeout=600):
        current = (
            (cache / "node_modules").is_dir()
            and installed_lock.exists()
            and installed_lock.read_text() == expected_lock
        )
        if not current:
            cache.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(NODE_PROJECT / "package.json", cache / "package.json")
            shutil.copyfile(NODE_PROJECT / "package-lock.json", installed_lock)
            subprocess.run(
                ["npm", "ci", "--no-audit", "--no-fund", "--silent"], cwd=cache, check=True, timeout=300
            )
        shutil.copyfile(NODE_PROJECT / "validate.mjs", cache / "validate.mjs")
    return cache


def object_errors(objects: list[ManifestObject]) -> dict[str, list[str]]:
    """Validate each object with the checker of its kind; map each object's label to its errors."""
    crd_schemas = load_crd_schemas()
    results: dict[str, list[str]] = {}
    node_checked: list[ManifestObject] = []

    for item in objects:
        key = (item.body.get("apiVersion", ""), item.body.get("kind", ""))
        if key in NODE_CHECKED_KINDS:
            node_checked.append(item)
        elif key in crd_schemas:
            results[item.label] = openapi_errors(item.body, crd_schemas[key])
        elif key[0].startswith("keda.sh/"):
            results[item.label] = keda_errors(item.body)
        elif key[0].startswith("networking.istio.io/"):
            results[item.label] = istio_errors(item.body)
        elif is_builtin(item.body):
            results[item.label] = builtin_errors(item.body)
        else:
            results[item.label] = [f"no published schema is known for {key[0]} {key[1]}; add a checker"]

    if node_checked:
        declarations = TypeDeclarations(argocd_types_folder(node_workdir() / "node_modules"))
    for item, errors in zip(node_checked, node_model_errors([o.body for o in node_checked]), strict=True):
        unknown = declarations.unknown_fields(item.body, item.body["kind"])
        results[item.label] = errors + [
            f"{path}: field is not declared by Argo CD's API types, Argo CD would ignore it"
            for path in unknown
        ]
    return results


JUNCTOR_KEYWORDS = ("anyOf", "allOf", "oneOf", "not")
INT_OR_STRING_ANY_OF = [{"type": "integer"}, {"type": "string"}]
FORBIDDEN_IN_JUNCTORS = ("description", "type", "default", "additionalProperties", "nullable")


def structural_violations(schema: dict, path: str = "") -> Iterator[str]:
    """Yield the places where a CRD schema breaks the structural-schema rules.

    The rules are those of apiextensions.k8s.io/v1 ("Specifying a structural
    schema" in the Kubernetes CRD documentation): every node has a type unless
    it is int-or-string or preserves unknown fields; properties and
    additionalProperties exclude each other; anyOf/allOf/oneOf/not branches
    carry no description, type, default, additionalProperties or nullable; a
    map-type list names its keys, and each key is required in its items.
    The one exception the rules make, int-or-string written as
    `anyOf: [{type: integer}, {type: string}]`, is allowed.
    """
    if "type" not in schema and not (
        schema.get("x-kubernetes-int-or-string") or schema.get("x-kubernetes-preserve-unknown-fields")
    ):
        yield f"{path or '/'}: no type"
    if "properties" in schema and "additionalProperties" in schema:
        yield f"{path or '/'}: properties and additionalProperties are both set"
    for junctor in JUNCTOR_KEYWORDS:
        if junctor == "anyOf" and _is_int_or_string_pattern(schema):
            continue
        branches = schema.get(junctor)
        branches = [branches] if isinstance(branches, dict) else branches or []
        for position, branch in enumerate(branches):
            yield from _junctor_violations(branch, f"{path}/{junctor}/{position}")
    if schema.get("x-kubernetes-list-type") == "map":
        keys = schema.get("x-kubernetes-list-map-keys") or []
        required = set((schema.get("items") or {}).get("required") or [])
        if not keys:
            yield f"{path}: x-kubernetes-list-type map without x-kubernetes-list-map-keys"
        for key in keys:
            if key not in required:
                yield f"{path}: list map key {key!r} is not required in items"
    for name, child in (schema.get("properties") or {}).items():
        yield from structural_violations(child, f"{path}/{name}")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from structural_violations(schema["additionalProperties"], f"{path}/additionalProperties")
    if isinstance(schema.get("items"), dict):
        yield from structural_violations(schema["items"], f"{path}/items")


def _is_int_or_string_pattern(schema: dict) -> bool:
    """Tell whether `schema` is the one anyOf the rules allow: int-or-string as integer | string."""
    return bool(schema.get("x-kubernetes-int-or-string")) and schema.get("anyOf") == INT_OR_STRING_ANY_OF


def _junctor_violations(branch: dict, path: str) -> Iterator[str]:
    for keyword in FORBIDDEN_IN_JUNCTORS:
        if keyword in branch:
            yield f"{path}: {keyword} is not allowed inside anyOf/allOf/oneOf/not"
