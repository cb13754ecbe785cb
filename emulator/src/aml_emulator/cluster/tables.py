"""Server-side printing: ``meta.k8s.io/v1 Table`` for ``kubectl get``, with the columns
the real apiserver prints for each kind."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from aml_emulator.cluster.models import ResourceType, parse_rfc3339
from aml_emulator.cluster.selectors import selector_to_string


def human_age(ts: str | None, now: float | None = None) -> str:
    start = parse_rfc3339(ts)
    if start is None:
        return "<unknown>"
    s = int(max(0, (now or time.time()) - start))
    if s < 120:
        return f"{s}s"
    m = s // 60
    if m < 10:
        return f"{m}m{s % 60}s" if s % 60 else f"{m}m"
    if m < 180:
        return f"{m}m"
    h = m // 60
    if h < 48:
        return f"{h}h"
    return f"{h // 24}d"


def _col(name: str, type_: str = "string", description: str = "", priority: int = 0, fmt: str = "") -> dict:
    return {"name": name, "type": type_, "format": fmt, "description": description, "priority": priority}


def _name(o: dict) -> str:
    return o["metadata"]["name"]


def _age(o: dict) -> str:
    return human_age(o["metadata"].get("creationTimestamp"))


def _pod_status(p: dict) -> str:
    if p["metadata"].get("deletionTimestamp"):
        return "Terminating"
    st = p.get("status") or {}
    reason = st.get("reason") or st.get("phase") or "Pending"
    for cs in st.get("containerStatuses") or []:
        state = cs.get("state") or {}
        if state.get("waiting", {}).get("reason"):
            reason = state["waiting"]["reason"]
        elif state.get("terminated"):
            t = state["terminated"]
            reason = t.get("reason") or (f"Signal:{t['signal']}" if t.get("signal") else f"ExitCode:{t.get('exitCode')}")
    return reason


def _pod_row(p: dict) -> list:
    st = p.get("status") or {}
    css = st.get("containerStatuses") or []
    total = len((p.get("spec") or {}).get("containers") or [])
    ready = sum(1 for c in css if c.get("ready"))
    restarts = sum(int(c.get("restartCount") or 0) for c in css)
    restarts_text: Any = restarts
    return [_name(p), f"{ready}/{total}", _pod_status(p), restarts_text, _age(p),
            st.get("podIP") or "<none>", (p.get("spec") or {}).get("nodeName") or "<none>",
            "<none>", "<none>"]


def _containers(o: dict) -> tuple[str, str]:
    cs = (((o.get("spec") or {}).get("template") or {}).get("spec") or {}).get("containers") or []
    return ",".join(c.get("name", "") for c in cs), ",".join(c.get("image", "") for c in cs)


def _deploy_row(d: dict) -> list:
    st = d.get("status") or {}
    names, images = _containers(d)
    return [_name(d), f"{st.get('readyReplicas', 0)}/{(d.get('spec') or {}).get('replicas', 0)}",
            st.get("updatedReplicas", 0), st.get("availableReplicas", 0), _age(d), names, images,
            selector_to_string((d.get("spec") or {}).get("selector"))]


def _rs_row(r: dict) -> list:
    st = r.get("status") or {}
    names, images = _containers(r)
    return [_name(r), (r.get("spec") or {}).get("replicas", 0), st.get("replicas", 0),
            st.get("readyReplicas", 0), _age(r), names, images,
            selector_to_string((r.get("spec") or {}).get("selector"))]


def _svc_ports(s: dict) -> str:
    out = []
    for p in (s.get("spec") or {}).get("ports") or []:
        t = f"{p.get('port')}"
        if p.get("nodePort"):
            t += f":{p['nodePort']}"
        out.append(f"{t}/{p.get('protocol', 'TCP')}")
    return ",".join(out) or "<none>"


def _svc_row(s: dict) -> list:
    spec = s.get("spec") or {}
    ingress = ((s.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    ext = ",".join(i.get("ip") or i.get("hostname") or "" for i in ingress) or (
        "<pending>" if spec.get("type") == "LoadBalancer" else "<none>")
    sel = spec.get("selector")
    return [_name(s), spec.get("type", "ClusterIP"), spec.get("clusterIP") or "<none>", ext,
            _svc_ports(s), _age(s), ",".join(f"{k}={v}" for k, v in sorted(sel.items())) if sel else "<none>"]


def _ep_row(e: dict) -> list:
    addrs = []
    for sub in e.get("subsets") or []:
        for a in sub.get("addresses") or []:
            for p in sub.get("ports") or []:
                addrs.append(f"{a.get('ip')}:{p.get('port')}")
    text = ",".join(addrs[:3]) + (f" + {len(addrs) - 3} more..." if len(addrs) > 3 else "")
    return [_name(e), text or "<none>", _age(e)]


def _hpa_row(h: dict) -> list:
    spec, st = h.get("spec") or {}, h.get("status") or {}
    ref = spec.get("scaleTargetRef") or {}
    targets = []
    for i, m in enumerate(spec.get("metrics") or []):
        tgt = ((m.get("resource") or {}).get("target") or {}).get("averageUtilization")
        cur = None
        cms = st.get("currentMetrics") or []
        if i < len(cms):
            cur = ((cms[i].get("resource") or {}).get("current") or {}).get("averageUtilization")
        targets.append(f"{'<unknown>' if cur is None else str(cur) + '%'}/{tgt}%")
    return [_name(h), f"{ref.get('kind')}/{ref.get('name')}", ", ".join(targets) or "<none>",
            spec.get("minReplicas", 1), spec.get("maxReplicas"), st.get("currentReplicas", 0), _age(h)]


def _event_row(e: dict) -> list:
    io = e.get("involvedObject") or {}
    last = e.get("lastTimestamp") or e.get("eventTime") or e["metadata"].get("creationTimestamp")
    return [human_age(last), e.get("type", ""), e.get("reason", ""),
            f"{(io.get('kind') or '').lower()}/{io.get('name', '')}", e.get("message", "")]


def _secret_row(s: dict) -> list:
    return [_name(s), s.get("type", "Opaque"), len(s.get("data") or {}), _age(s)]


def _cm_row(c: dict) -> list:
    return [_name(c), len(c.get("data") or {}) + len(c.get("binaryData") or {}), _age(c)]


def _ns_row(n: dict) -> list:
    return [_name(n), (n.get("status") or {}).get("phase", "Active"), _age(n)]


def _node_row(n: dict) -> list:
    ready = any(c.get("type") == "Ready" and c.get("status") == "True"
                for c in (n.get("status") or {}).get("conditions") or [])
    return [_name(n), "Ready" if ready else "NotReady", "<none>", _age(n),
            ((n.get("status") or {}).get("nodeInfo") or {}).get("kubeletVersion", "")]


def _sa_row(s: dict) -> list:
    return [_name(s), len(s.get("secrets") or []), _age(s)]


def _created_row(r: dict) -> list:
    return [_name(r), r["metadata"].get("creationTimestamp") or ""]


def _subjects(b: dict, kind: str, namespaced: bool) -> str:
    out = []
    for s in b.get("subjects") or []:
        if s.get("kind") != kind:
            continue
        if kind == "ServiceAccount" and (not namespaced or s.get("namespace")):
            out.append(f"{s.get('namespace', '')}/{s.get('name', '')}")
        else:
            out.append(s.get("name", ""))
    return ", ".join(out)


def _binding_row(b: dict) -> list:
    ref = b.get("roleRef") or {}
    namespaced = bool(b["metadata"].get("namespace"))
    return [_name(b), f"{ref.get('kind', '')}/{ref.get('name', '')}", _age(b),
            _subjects(b, "User", namespaced), _subjects(b, "Group", namespaced),
            _subjects(b, "ServiceAccount", namespaced)]


_NAME_COL = _col("Name", fmt="name", description="Name must be unique within a namespace.")
_AGE_COL = _col("Age", description="CreationTimestamp is a timestamp representing the server time when this object was created.")

TABLES: dict[str, tuple[list[dict], Callable[[dict], list]]] = {
    "pods": ([_NAME_COL, _col("Ready", description="The aggregate readiness state of this pod for accepting traffic."),
              _col("Status", description="The aggregate status of the containers in this pod."),
              _col("Restarts", description="The number of times the containers in this pod have been restarted and when the last container in this pod has restarted."),
              _AGE_COL, _col("IP", priority=1, description="IP address allocated to the pod."),
              _col("Node", priority=1, description="Name of the node the pod is assigned to."),
              _col("Nominated Node", priority=1), _col("Readiness Gates", priority=1)], _pod_row),
    "deployments": ([_NAME_COL, _col("Ready", description="Number of the pod with ready state"),
                     _col("Up-to-date", "integer", "Total number of non-terminated pods targeted by this deployment that have the desired template spec."),
                     _col("Available", "integer", "Total number of available pods (ready for at least minReadySeconds) targeted by this deployment."),
                     _AGE_COL, _col("Containers", priority=1), _col("Images", priority=1),
                     _col("Selector", priority=1)], _deploy_row),
    "replicasets": ([_NAME_COL, _col("Desired", "integer"), _col("Current", "integer"),
                     _col("Ready", "integer"), _AGE_COL, _col("Containers", priority=1),
                     _col("Images", priority=1), _col("Selector", priority=1)], _rs_row),
    "services": ([_NAME_COL, _col("Type"), _col("Cluster-IP"), _col("External-IP"),
                  _col("Port(s)"), _AGE_COL, _col("Selector", priority=1)], _svc_row),
    "endpoints": ([_NAME_COL, _col("Endpoints"), _AGE_COL], _ep_row),
    "horizontalpodautoscalers": ([_NAME_COL, _col("Reference"), _col("Targets"),
                                  _col("MinPods", "integer"), _col("MaxPods", "integer"),
                                  _col("Replicas", "integer"), _AGE_COL], _hpa_row),
    "events": ([_col("Last Seen"), _col("Type"), _col("Reason"), _col("Object"), _col("Message")], _event_row),
    "secrets": ([_NAME_COL, _col("Type"), _col("Data", "integer"), _AGE_COL], _secret_row),
    "configmaps": ([_NAME_COL, _col("Data", "integer"), _AGE_COL], _cm_row),
    "namespaces": ([_NAME_COL, _col("Status"), _AGE_COL], _ns_row),
    "nodes": ([_NAME_COL, _col("Status"), _col("Roles"), _AGE_COL, _col("Version")], _node_row),
    "serviceaccounts": ([_NAME_COL, _col("Secrets", "integer"), _AGE_COL], _sa_row),
    "roles": ([_NAME_COL, _col("Created At", "date")], _created_row),
    "clusterroles": ([_NAME_COL, _col("Created At", "date")], _created_row),
    "rolebindings": ([_NAME_COL, _col("Role"), _AGE_COL, _col("Users", priority=1),
                      _col("Groups", priority=1), _col("ServiceAccounts", priority=1)], _binding_row),
    "clusterrolebindings": ([_NAME_COL, _col("Role"), _AGE_COL, _col("Users", priority=1),
                             _col("Groups", priority=1), _col("ServiceAccounts", priority=1)], _binding_row),
}


def _row_object(rt: ResourceType, obj: dict, include: str) -> dict | None:
    if include == "None":
        return None
    if include == "Object":
        return obj
    return {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj.get("metadata", {})}


def to_table(rt: ResourceType, objs: list[dict], list_meta: dict, *, include: str = "Metadata",
             headers: bool = True) -> dict:
    cols, row_fn = TABLES.get(rt.plural, ([_NAME_COL, _AGE_COL], lambda o: [_name(o), _age(o)]))
    rows = []
    for o in objs:
        row: dict[str, Any] = {"cells": row_fn(o)}
        ro = _row_object(rt, o, include)
        if ro is not None:
            row["object"] = ro
        rows.append(row)
    return {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": list_meta,
            "columnDefinitions": cols if headers else [], "rows": rows}
