"""Metric names: the ones the code exports and the ones a Grafana dashboard queries.

`exported_metric_names` reads every prometheus_client metric definition
(Counter, Gauge, Histogram, Summary, Info, Enum) in the service packages with
`ast`, and expands each to the series names Prometheus stores: a Counter
`x_total` also as `x_created`, a Histogram `x` as `x_bucket`, `x_sum`,
`x_count` and `x_created`. `queried_metric_names` parses each PromQL query with
promql-parser after replacing Grafana's variables with placeholder values.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import promql_parser

REPO = Path(__file__).resolve().parents[2]
SERVICE_PACKAGES = ("engine", "hooks", "buffer", "carbonstat")
METRIC_CLASSES = {"Counter", "Gauge", "Histogram", "Summary", "Info", "Enum"}

# Series of RabbitMQ's built-in Prometheus plugin (rabbitmq_prometheus) with
# per-object metrics, labelled by vhost and queue. The dashboard assumes that exporter.
RABBITMQ_EXPORTER_METRICS = frozenset(
    {
        "rabbitmq_queue_messages",
        "rabbitmq_queue_messages_ready",
        "rabbitmq_queue_messages_unacked",
        "rabbitmq_queue_consumers",
    }
)

GRAFANA_RANGE_VARIABLES = ("$__rate_interval", "$__interval", "$__range")
GRAFANA_VARIABLE = re.compile(r"\$\{?[A-Za-z_][A-Za-z0-9_]*(?::[a-z]+)?\}?")
LABEL_VALUES = re.compile(r"^\s*label_values\(\s*(?P<selector>.+?)\s*,\s*[A-Za-z_][A-Za-z0-9_]*\s*\)\s*$")


def series_names(kind: str, name: str) -> set[str]:
    """Return the series Prometheus stores for one metric definition."""
    if kind == "Counter":
        base = name.removesuffix("_total")
        return {f"{base}_total", f"{base}_created"}
    if kind == "Histogram":
        return {f"{name}_bucket", f"{name}_sum", f"{name}_count", f"{name}_created"}
    if kind == "Summary":
        return {name, f"{name}_sum", f"{name}_count", f"{name}_created"}
    if kind == "Info":
        return {f"{name}_info"}
    return {name}


def metric_definitions(path: Path) -> Iterator[tuple[str, str]]:
    """Yield (class name, metric name) for every metric constructed in `path` with a literal name."""
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        kind = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", None)
        if kind not in METRIC_CLASSES:
            continue
        keywords = {k.arg: k.value for k in node.keywords if k.arg}
        name_node = node.args[0] if node.args else keywords.get("name")
        if not (isinstance(name_node, ast.Constant) and isinstance(name_node.value, str)):
            continue
        parts = [
            keywords[key].value
            for key in ("namespace", "subsystem")
            if isinstance(keywords.get(key), ast.Constant) and keywords[key].value
        ]
        yield kind, "_".join([*parts, name_node.value])


def exported_metric_names(packages: tuple[str, ...] = SERVICE_PACKAGES) -> set[str]:
    """Return every series name the service packages export."""
    names: set[str] = set()
    for package in packages:
        for path in sorted((REPO / package).rglob("*.py")):
            for kind, name in metric_definitions(path):
                names |= series_names(kind, name)
    return names


def substitute_grafana_variables(query: str) -> str:
    """Replace Grafana's variables so the query parses as plain PromQL."""
    for variable in GRAFANA_RANGE_VARIABLES:
        query = query.replace(variable, "5m")
    return GRAFANA_VARIABLE.sub("placeholder", query)


def queried_metric_names(query: str) -> set[str]:
    """Return the metric names a PromQL query (or a label_values() variable query) selects."""
    query = substitute_grafana_variables(query)
    label_values = LABEL_VALUES.match(query)
    if label_values:
        query = label_values.group("selector")
    return set(_selector_names(promql_parser.parse(query)))


def _selector_names(node) -> Iterator[str]:
    if isinstance(node, promql_parser.VectorSelector):
        if node.name:
            yield node.name
        for matcher in node.matchers.matchers:
            if matcher.name == "__name__":
                yield matcher.value
    elif isinstance(node, promql_parser.MatrixSelector):
        yield from _selector_names(node.vector_selector)
    elif isinstance(node, promql_parser.Call):
        for argument in node.args:
            yield from _selector_names(argument)
    elif isinstance(node, promql_parser.BinaryExpr):
        yield from _selector_names(node.lhs)
        yield from _selector_names(node.rhs)
    elif isinstance(node, promql_parser.AggregateExpr):
        yield from _selector_names(node.expr)
        if node.param is not None:
            yield from _selector_names(node.param)
    elif isinstance(node, promql_parser.ParenExpr | promql_parser.UnaryExpr | promql_parser.SubqueryExpr):
        yield from _selector_names(node.expr)


def dashboard_queries(dashboard: dict) -> Iterator[tuple[str, str]]:
    """Yield (where, query) for every panel target and every query variable of a dashboard."""
    for panel in _all_panels(dashboard.get("panels", [])):
        for target in panel.get("targets", []):
            if target.get("expr"):
                yield f"panel {panel.get('title')!r} target {target.get('refId')}", target["expr"]
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable.get("type") != "query":
            continue
        query = variable.get("query")
        text = query.get("query") if isinstance(query, dict) else query
        if text:
            yield f"variable {variable['name']!r}", text


def _all_panels(panels: list[dict]) -> Iterator[dict]:
    for panel in panels:
        yield panel
        yield from _all_panels(panel.get("panels", []))
