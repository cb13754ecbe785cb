"""Label and field selectors, in the string form of the list/watch query and the
``LabelSelector`` object form of deployments, replica sets and services."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from aml_emulator.cluster.exceptions import bad_request

Predicate = Callable[[dict], bool]

_LABEL_TOKEN = re.compile(
    r"\s*(?P<neg>!)?\s*(?P<key>[A-Za-z0-9_./-]+)\s*"
    r"(?:(?P<op>==|=|!=)\s*(?P<val>[A-Za-z0-9_.-]*)|\s+(?P<setop>in|notin)\s*\((?P<set>[^)]*)\))?\s*"
)


def _split_top(text: str) -> list[str]:
    parts, depth, cur = [], 0, []
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return [p for p in (s.strip() for s in parts) if p]


def parse_label_selector(text: str | None) -> Predicate:
    """Parse ``a=b,c!=d,e in (x,y),f notin (z),g,!h`` into a predicate on a label dict."""
    if not text:
        return lambda labels: True
    reqs: list[Callable[[dict], bool]] = []
    for part in _split_top(text):
        m = _LABEL_TOKEN.fullmatch(part)
        if not m:
            raise bad_request(f"unable to parse requirement: found '{part}', expected: identifier")
        key, neg = m.group("key"), bool(m.group("neg"))
        if neg and (m.group("op") or m.group("setop")):
            raise bad_request(f"unable to parse requirement: '{part}'")
        if m.group("op"):
            val, op = m.group("val"), m.group("op")
            if op == "!=":
                reqs.append(lambda l, k=key, v=val: l.get(k) != v)
            else:
                reqs.append(lambda l, k=key, v=val: k in l and l[k] == v)
        elif m.group("setop"):
            values = {v.strip() for v in m.group("set").split(",") if v.strip()}
            if m.group("setop") == "in":
                reqs.append(lambda l, k=key, vs=values: k in l and l[k] in vs)
            else:
                reqs.append(lambda l, k=key, vs=values: l.get(k) not in vs)
        elif neg:
            reqs.append(lambda l, k=key: k not in l)
        else:
            reqs.append(lambda l, k=key: k in l)
    return lambda labels: all(r(labels) for r in reqs)


def label_selector_object(sel: dict | None) -> Predicate:
    """A ``metav1.LabelSelector`` (matchLabels + matchExpressions). An empty selector
    matches everything; ``None`` matches nothing (the apiserver's convention)."""
    if sel is None:
        return lambda labels: False
    reqs: list[Callable[[dict], bool]] = []
    for k, v in (sel.get("matchLabels") or {}).items():
        reqs.append(lambda l, k=k, v=v: l.get(k) == v)
    for expr in sel.get("matchExpressions") or []:
        k, op, vals = expr.get("key"), expr.get("operator"), set(expr.get("values") or [])
        if op == "In":
            reqs.append(lambda l, k=k, vs=vals: l.get(k) in vs)
        elif op == "NotIn":
            reqs.append(lambda l, k=k, vs=vals: l.get(k) not in vs)
        elif op == "Exists":
            reqs.append(lambda l, k=k: k in l)
        elif op == "DoesNotExist":
            reqs.append(lambda l, k=k: k not in l)
        else:
            raise bad_request(f'"{op}" is not a valid label selector operator')
    return lambda labels: all(r(labels) for r in reqs)


def selector_to_string(sel: dict | None) -> str:
    if not sel:
        return ""
    parts = [f"{k}={v}" for k, v in sorted((sel.get("matchLabels") or {}).items())]
    for expr in sel.get("matchExpressions") or []:
        k, op, vals = expr.get("key"), expr.get("operator"), sorted(expr.get("values") or [])
        if op == "In":
            parts.append(f"{k} in ({','.join(vals)})")
        elif op == "NotIn":
            parts.append(f"{k} notin ({','.join(vals)})")
        elif op == "Exists":
            parts.append(k)
        elif op == "DoesNotExist":
            parts.append(f"!{k}")
    return ",".join(parts)


# Field selectors: every resource supports metadata.name and metadata.namespace; some more.
FIELD_LABELS: dict[str, set[str]] = {
    "pods": {"status.phase", "spec.nodeName", "spec.restartPolicy", "spec.schedulerName",
             "spec.serviceAccountName", "status.podIP", "status.nominatedNodeName"},
    "secrets": {"type"},
    "namespaces": {"status.phase"},
    "replicasets": {"status.replicas"},
    "events": {"involvedObject.kind", "involvedObject.namespace", "involvedObject.name",
               "involvedObject.uid", "involvedObject.apiVersion", "involvedObject.resourceVersion",
               "involvedObject.fieldPath", "reason", "reportingComponent", "source", "type"},
    "nodes": {"spec.unschedulable"},
}


def _get_path(obj: dict, path: str) -> Any:
    cur: Any = obj
    for seg in path.split("."):
        if not isinstance(cur, dict):
            return None
        cur = cur.get(seg)
    if path == "source" and isinstance(cur, dict):
        return cur.get("component")
    return cur


def parse_field_selector(text: str | None, plural: str, kind: str) -> Predicate:
    if not text:
        return lambda obj: True
    allowed = {"metadata.name", "metadata.namespace"} | FIELD_LABELS.get(plural, set())
    reqs: list[Callable[[dict], bool]] = []
    for part in _split_top(text):
        m = re.fullmatch(r"\s*([A-Za-z0-9_.]+)\s*(==|=|!=)\s*(.*?)\s*", part)
        if not m:
            raise bad_request(f"invalid selector: '{text}'; can't understand '{part}'")
        field, op, val = m.groups()
        if field not in allowed:
            raise bad_request(f'field label not supported: {field}')

        def pred(obj: dict, f: str = field, o: str = op, v: str = val) -> bool:
            actual = _get_path(obj, f)
            actual_s = "" if actual is None else str(actual).lower() if isinstance(actual, bool) else str(actual)
            return (actual_s != v) if o == "!=" else (actual_s == v)
        reqs.append(pred)
    return lambda obj: all(r(obj) for r in reqs)
