"""Find fields an Argo CD object has but Argo CD's API types do not declare.

The validators of @kubernetes-models/argo-cd check types and required fields
but accept unknown fields, and Argo CD drops a field it does not know: a
misspelt `ignoreDiferences` would silently do nothing. The same package ships
TypeScript declarations generated from Argo CD's Go types, one file per type,
in two shapes:

    export interface IApplicationSpec { "destination": I...ApplicationDestination; ... }
    export type ISyncOptions = Array<string>;

`unknown_fields` walks an object along those declarations. Types it cannot
resolve (ObjectMeta from another package, inline map types) are not checked
below that point.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path

INTERFACE = re.compile(r"export interface (I\w+)(?: extends [\w, ]+)? \{\n(?P<body>.*?)\n\}", re.DOTALL)
TYPE_ALIAS = re.compile(r"export type (I\w+) = (?P<type>[^;]+);")
FIELD = re.compile(r'^    "(?P<name>[^"]+)"\??: (?P<type>.+?);?$', re.MULTILINE)
LOCAL_IMPORT = re.compile(r'import \{ (?P<alias>I\w+) \} from "\./(?P<stem>\w+)\.js";')
ARRAY = re.compile(r"^Array<(?P<item>.+)>$")
PRIMITIVES = {"string", "number", "boolean"}


class TypeDeclarations:
    """The TypeScript declarations of one API group version folder of the package."""

    def __init__(self, folder: Path):
        self.folder = folder

    @cache  # noqa: B019 - one instance per test session
    def declaration(self, stem: str) -> tuple[dict[str, str] | str | None, dict[str, str]]:
        """Return (fields of the interface, or the aliased type, or None) and the file's local imports."""
        path = self.folder / f"{stem}.d.ts"
        if not path.is_file():
            return None, {}
        text = path.read_text()
        imports = {m["alias"]: m["stem"] for m in LOCAL_IMPORT.finditer(text)}
        interface = INTERFACE.search(text)
        if interface:
            fields = {m["name"]: m["type"].strip() for m in FIELD.finditer(interface["body"])}
            return fields, imports
        alias = TYPE_ALIAS.search(text)
        return (alias["type"].strip() if alias else None), imports

    def unknown_fields(self, value: object, stem: str, path: str = "") -> Iterator[str]:
        """Yield the paths of fields in `value` that the type declared in `stem`.d.ts does not declare."""
        declared, imports = self.declaration(stem)
        if isinstance(declared, dict):
            yield from self._object_fields(value, declared, imports, path)
        elif isinstance(declared, str):
            yield from self._typed(value, declared, imports, path)

    def _object_fields(
        self, value: object, fields: dict[str, str], imports: dict[str, str], path: str
    ) -> Iterator[str]:
        if not isinstance(value, dict):
            return
        for key, child in value.items():
            if key not in fields:
                yield f"{path}/{key}"
            else:
                yield from self._typed(child, fields[key], imports, f"{path}/{key}")

    def _typed(self, value: object, type_text: str, imports: dict[str, str], path: str) -> Iterator[str]:
        array = ARRAY.match(type_text)
        if array and isinstance(value, list):
            for position, item in enumerate(value):
                yield from self._typed(item, array["item"], imports, f"{path}/{position}")
        elif type_text in imports:
            yield from self.unknown_fields(value, imports[type_text], path)
        # Primitives, literals, inline maps and types from other packages: not checked further.


def argocd_types_folder(node_modules: Path) -> Path:
    """Return the folder of the argoproj.io/v1alpha1 declarations inside an installed node_modules."""
    return node_modules / "@kubernetes-models" / "argo-cd" / "argoproj.io" / "v1alpha1"
