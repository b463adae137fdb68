"""Render the argocd-cm patch that installs the TrafficSchedule health check.

The Lua source lives in `argocd/health/trafficschedule.lua`, where it can be
read, diffed and tested. Argo CD reads it from a key of the `argocd-cm`
ConfigMap, so `argocd/config/argocd-cm-health.yaml` carries a copy; a test
fails when the two differ. Regenerate the copy with:

    .venv/bin/python -m tests.gitops.render_argocd_cm
"""

from __future__ import annotations

from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
HEALTH_SCRIPT = REPO / "argocd" / "health" / "trafficschedule.lua"
CONFIGMAP_PATCH = REPO / "argocd" / "config" / "argocd-cm-health.yaml"
HEALTH_KEY = "resource.customizations.health.scheduling.carbonrouter.io_TrafficSchedule"

HEADER = """\
# Merge into Argo CD's argocd-cm ConfigMap (namespace argocd):
#   kubectl -n argocd patch configmap argocd-cm --type merge \\
#     --patch-file argocd/config/argocd-cm-health.yaml
# Generated from argocd/health/trafficschedule.lua by
# `python -m tests.gitops.render_argocd_cm`; edit the .lua file, not this one.
#
# application.resourceTrackingMethod: annotation (the default from Argo CD 3.0)
# keeps Argo CD from claiming a Metacontroller child that carries a copy of the
# schedule's app.kubernetes.io/instance label.
"""


class _Dumper(yaml.SafeDumper):
    """A SafeDumper of its own, so the literal-block representer stays local."""


class _LiteralText(str):
    """A string that YAML writes as a literal block, so the Lua stays readable."""


def _literal_representer(dumper: yaml.SafeDumper, text: _LiteralText) -> yaml.Node:
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style="|")


_Dumper.add_representer(_LiteralText, _literal_representer)


def render_configmap(script: str) -> str:
    """Return the argocd-cm patch text that carries `script` under the health key."""
    patch = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "argocd-cm",
            "namespace": "argocd",
            "labels": {
                "app.kubernetes.io/name": "argocd-cm",
                "app.kubernetes.io/part-of": "argocd",
            },
        },
        "data": {
            "application.resourceTrackingMethod": "annotation",
            HEALTH_KEY: _LiteralText(script),
        },
    }
    body = yaml.dump(patch, Dumper=_Dumper, sort_keys=False, width=200)
    return HEADER + body


def main() -> None:
    """Write the argocd-cm patch next to the other Argo CD configuration."""
    CONFIGMAP_PATCH.parent.mkdir(parents=True, exist_ok=True)
    CONFIGMAP_PATCH.write_text(render_configmap(HEALTH_SCRIPT.read_text()))
    print(f"wrote {CONFIGMAP_PATCH.relative_to(REPO)}")


if __name__ == "__main__":
    main()
