"""Conversion between served versions of one stored resource: autoscaling/v1
HorizontalPodAutoscaler is served from the stored autoscaling/v2 object."""

from __future__ import annotations

import copy

from aml_emulator.cluster.models import ResourceType


def _cpu_metric(metrics: list | None) -> dict | None:
    for m in metrics or []:
        res = m.get("resource") or {}
        if m.get("type") == "Resource" and res.get("name") == "cpu" and (res.get("target") or {}).get("type") == "Utilization":
            return m
    return None


def to_external(rt: ResourceType, obj: dict) -> dict:
    """Stored (storage-version) object → the version ``rt`` serves."""
    if not (rt.group == "autoscaling" and rt.version == "v1"):
        return obj
    spec = obj.get("spec") or {}
    out = {k: v for k, v in obj.items() if k not in ("spec", "status")}
    s1 = {k: spec[k] for k in ("scaleTargetRef", "minReplicas", "maxReplicas") if k in spec}
    cpu = _cpu_metric(spec.get("metrics"))
    if cpu is not None:
        s1["targetCPUUtilizationPercentage"] = cpu["resource"]["target"].get("averageUtilization")
    out["spec"] = s1
    st = obj.get("status")
    if st is not None:
        st1 = {k: st[k] for k in ("observedGeneration", "lastScaleTime", "currentReplicas", "desiredReplicas") if k in st}
        cur = _cpu_metric([{**m, "resource": {**(m.get("resource") or {}), "target": {"type": "Utilization"}}}
                           for m in st.get("currentMetrics") or [] if m.get("type") == "Resource"])
        if cur is not None and "averageUtilization" in (cur["resource"].get("current") or {}):
            st1["currentCPUUtilizationPercentage"] = cur["resource"]["current"]["averageUtilization"]
        out["status"] = st1
    out["apiVersion"] = rt.api_version
    return out


def to_internal(rt: ResourceType, obj: dict, stored: dict | None) -> dict:
    """An object in the version ``rt`` serves → the storage version (keeping what the
    served version cannot express from ``stored``)."""
    if not (rt.group == "autoscaling" and rt.version == "v1"):
        return obj
    out = {k: v for k, v in obj.items() if k not in ("spec", "status")}
    spec1 = obj.get("spec") or {}
    old_spec = copy.deepcopy((stored or {}).get("spec") or {})
    spec = {k: spec1[k] for k in ("scaleTargetRef", "minReplicas", "maxReplicas") if k in spec1}
    others = [m for m in old_spec.get("metrics") or [] if m is not _cpu_metric(old_spec.get("metrics"))]
    target = spec1.get("targetCPUUtilizationPercentage")
    cpu = [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": target}}}] if target else []
    if cpu or others:
        spec["metrics"] = cpu + others
    if "behavior" in old_spec:
        spec["behavior"] = old_spec["behavior"]
    out["spec"] = spec
    if "status" in obj:
        st = copy.deepcopy((stored or {}).get("status") or {})
        st1 = obj.get("status") or {}
        for k in ("observedGeneration", "lastScaleTime", "currentReplicas", "desiredReplicas"):
            if k in st1:
                st[k] = st1[k]
        out["status"] = st
    out["apiVersion"] = "autoscaling/v2"
    return out
