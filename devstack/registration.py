"""Register the example TrafficSchedule the way Metacontroller and the sync hook would.

In a cluster, Metacontroller posts a sync request (parent, observed children,
related flavour Deployments) to the hooks, the sync hook calls the engine's
`PUT /config/<ns>/<name>`, and Metacontroller stores the returned status on
the parent and calls again after `resyncAfterSeconds`. `Registrar` repeats
that loop locally against the real hooks endpoints. Before each sync it calls
`/customize` to learn which related objects to send. It selects them from the
example files by the returned rules, as Metacontroller selects them from the
API server. It keeps the status and children of each sync response and sends
them back in the next request, so the ledger state round-trips through the
status as in a cluster.

With `register_via="engine"` it skips the hooks and sends `PUT /config`
itself, built from the same files; use that only to debug the engine alone.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field

import requests
import yaml

from devstack.metacontroller import SelectorError, load_controller, select_related, sync_request
from devstack.settings import StackSettings

log = logging.getLogger("devstack")

HOOK_TIMEOUT = 10.0  # Metacontroller's default webhook timeout, in seconds
MIN_RESYNC = 1.0
ENERGY_ANNOTATION = "carbonrouter.io/energy"
PRECISION_LABEL = "carbonstat.precision"
FLAVOUR_ENV = "CARBONSTAT_FLAVOUR"
FLAVOUR_LABEL = "carbonrouter/flavour"
# Status conditions of the sync hook where "True" means healthy, in the order they are checked.
READINESS_CONDITIONS = ("SpecValid", "EngineReachable", "FlavoursDiscovered", "Ready")


class RegistrationError(RuntimeError):
    """The schedule could not be registered; the message names the endpoint and its reply."""


@dataclass
class Example:
    """The example schedule and the related objects the customize hook would select."""

    schedule: dict
    related: list[dict] = field(default_factory=list)

    @property
    def deployments(self) -> list[dict]:
        return [obj for obj in self.related if obj.get("kind") == "Deployment"]


def load_example(settings: StackSettings) -> Example:
    """Read the example files, placing them in the configured namespace and name."""
    schedule = yaml.safe_load(settings.schedule_file.read_text())
    related = [doc for doc in yaml.safe_load_all(settings.flavours_file.read_text()) if doc]

    schedule["metadata"]["namespace"] = settings.namespace
    schedule["metadata"]["name"] = settings.name
    schedule["spec"]["target"]["service"] = settings.name
    if settings.policy:
        schedule["spec"].setdefault("scheduler", {})["policy"] = settings.policy
    for obj in related:
        obj["metadata"]["namespace"] = settings.namespace
        labels = obj["metadata"].setdefault("labels", {})
        if "carbonrouter/parent-service" in labels:
            labels["carbonrouter/parent-service"] = settings.name
        if obj.get("kind") == "Service":
            obj["metadata"]["name"] = settings.name
    return Example(schedule=schedule, related=related)


def engine_config(example: Example, *, state: dict | None) -> dict:
    """Build `PUT /config` from the example directly, for `register_via="engine"`."""
    spec = example.schedule["spec"]
    flavours = []
    for deployment in example.deployments:
        metadata = deployment["metadata"]
        flavours.append(
            {
                "name": flavour_name(deployment),
                "precision": int(metadata["labels"][PRECISION_LABEL]),
                "energy": float(metadata.get("annotations", {}).get(ENERGY_ANNOTATION, 1.0)),
                "enabled": True,
            }
        )
    flavours.sort(key=lambda flavour: -flavour["precision"])

    def bounds(section: str, default_max: int) -> dict:
        replicas = spec.get(section, {}).get("replicas", {})
        return {"min": int(replicas.get("min", 1)), "max": int(replicas.get("max", default_max))}

    body = {
        "scheduler": spec.get("scheduler", {}),
        "flavours": flavours,
        "componentBounds": {
            "router": bounds("router", 5),
            "consumer": bounds("consumer", 5),
            "target": bounds("target", 10),
        },
    }
    if state:
        body["state"] = state
    return body


def flavour_name(deployment: dict) -> str:
    """Return a Deployment's flavour name: its carbonrouter/flavour label, else its CARBONSTAT_FLAVOUR."""
    label = deployment["metadata"].get("labels", {}).get(FLAVOUR_LABEL)
    if label:
        return label
    for container in deployment["spec"]["template"]["spec"]["containers"]:
        for variable in container.get("env", []):
            if variable.get("name") == FLAVOUR_ENV:
                return variable["value"]
    return deployment["metadata"]["name"]


class Registrar:
    """The sync loop of one schedule: register now, then again after each resync delay."""

    def __init__(self, settings: StackSettings):
        self.settings = settings
        self.example = load_example(settings)
        self.controller = load_controller()
        self.status: dict | None = None
        self.children: list[dict] = []
        self.state: dict | None = None
        self.syncs = 0
        self.last_error: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def key(self) -> str:
        return f"{self.settings.namespace}/{self.settings.name}"

    def sync_once(self) -> float:
        """Register the schedule once and return the seconds until the next sync."""
        if self.settings.register_via == "engine":
            resync = self._put_config()
        else:
            resync = self._post_sync()
        self.syncs += 1
        self.last_error = None
        return max(MIN_RESYNC, min(resync, self.settings.resync_seconds))

    def failing_condition(self) -> str | None:
        """Return "Type: message" of the first readiness condition the sync hook reported as not True.

        Only conditions where True means healthy count; others, such as
        CeilingsClamped, are informational and False there is the normal case.
        """
        by_type = {c.get("type"): c for c in (self.status or {}).get("conditions") or []}
        for kind in READINESS_CONDITIONS:
            condition = by_type.get(kind)
            if condition is not None and condition.get("status") != "True":
                return f"{kind}: {condition.get('message') or condition.get('reason')}"
        return None

    def _customize(self) -> list[dict]:
        """Ask the customize hook which related objects the sync needs, and select them from the example."""
        url = self.settings.url("hooks") + "/customize"
        reply = _post_json("POST", url, {"controller": self.controller, "parent": self.example.schedule})
        rules = reply.get("relatedResources")
        if not isinstance(rules, list):
            raise RegistrationError(
                f"customize hook at {url} returned no relatedResources list: {str(reply)[:300]}"
            )
        try:
            return select_related(rules, self.example.related, namespace=self.settings.namespace)
        except SelectorError as exc:
            raise RegistrationError(f"customize hook at {url} returned an invalid rule: {exc}") from None

    def _post_sync(self) -> float:
        url = self.settings.url("hooks") + "/sync"
        body = sync_request(
            controller=self.controller,
            schedule=self.example.schedule,
            status=self.status,
            children=self.children,
            related=self._customize(),
        )
        reply = _post_json("POST", url, body)
        if not isinstance(reply.get("children"), list) or not isinstance(reply.get("status"), dict):
            raise RegistrationError(
                f"sync hook at {url} returned no children list or status: {str(reply)[:300]}"
            )

        # Metacontroller replaces the parent's status with the hook's and keeps
        # the children it applied; both go back in the next request.
        self.status = reply["status"]
        self.children = reply["children"]
        self._write_sync_result()
        return float(reply.get("resyncAfterSeconds") or self.settings.resync_seconds)

    def _write_sync_result(self) -> None:
        """Write the last sync's children and status under the run folder, for people to read.

        They are what Metacontroller would apply in a cluster and store on the
        TrafficSchedule; nothing reads the files back.
        """
        self.settings.run_dir.mkdir(parents=True, exist_ok=True)
        outputs = {
            "children.yaml": yaml.safe_dump_all(self.children, sort_keys=False),
            "status.yaml": yaml.safe_dump(self.status, sort_keys=False),
        }
        for name, text in outputs.items():
            path = self.settings.run_dir / name
            temporary = path.with_suffix(".tmp")
            temporary.write_text(text)
            temporary.replace(path)

    def _put_config(self) -> float:
        url = f"{self.settings.url('engine')}/config/{self.key}"
        decision = _post_json("PUT", url, engine_config(self.example, state=self.state))
        self.state = decision.get("state")
        return self.settings.resync_seconds

    def start(self) -> None:
        """Run the sync loop in a daemon thread until `stop`."""
        self._thread = threading.Thread(target=self._loop, name="devstack-resync", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=HOOK_TIMEOUT + 1)

    def _loop(self) -> None:
        delay = 0.0
        while not self._stop.wait(delay):
            try:
                delay = self.sync_once()
                log.debug(
                    "event=sync schedule=%s via=%s next_in=%.1f", self.key, self.settings.register_via, delay
                )
            except (RegistrationError, requests.RequestException) as exc:
                # Metacontroller retries a failed sync with back-off; a fixed 5 s is enough locally.
                self.last_error = str(exc)
                log.warning("event=sync-failed schedule=%s error=%s retry_in=5", self.key, exc)
                delay = 5.0


def _post_json(method: str, url: str, body: dict) -> dict:
    response = requests.request(method, url, json=body, timeout=HOOK_TIMEOUT)
    if response.status_code != 200:
        raise RegistrationError(f"{method} {url} returned {response.status_code}: {response.text[:500]}")
    try:
        return response.json()
    except ValueError:
        raise RegistrationError(
            f"{method} {url} returned a body that is not JSON: {response.text[:200]}"
        ) from None
