"""``apiregistration.k8s.io/v1`` APIServices, read-only: one per group-version the API
server serves, ``metrics.k8s.io/v1beta1`` included, each ``Available``. They are what
``kubectl get apiservices`` shows when one checks that the metrics API is registered.

All are served by the emulator's API server itself, so all are ``Local`` (on a real cluster
``v1beta1.metrics.k8s.io`` points at the ``kube-system/metrics-server`` Service). Creating,
changing or deleting one is refused with 405, naming the resource.
"""

from __future__ import annotations

import uuid
from typing import Any

import attrs

from aml_emulator.cluster import exceptions as err
from aml_emulator.cluster import metrics
from aml_emulator.cluster.models import GROUP_VERSIONS, now_rfc3339

GROUP = "apiregistration.k8s.io"
VERSION = "v1"
GROUP_VERSION = f"{GROUP}/{VERSION}"
_CREATED = now_rfc3339()


@attrs.frozen
class _Resource:
    """What RBAC checks a request against."""

    plural: str = "apiservices"
    group: str = GROUP


def group() -> dict:
    v = {"groupVersion": GROUP_VERSION, "version": VERSION}
    return {"name": GROUP, "versions": [v], "preferredVersion": v}


def resource_list() -> dict:
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": GROUP_VERSION, "resources": [
        {"name": "apiservices", "singularName": "apiservice", "namespaced": False, "kind": "APIService",
         "verbs": ["get", "list"]},
        {"name": "apiservices/status", "singularName": "", "namespaced": False, "kind": "APIService", "verbs": ["get"]}]}


def _served() -> list[tuple[str, str]]:
    pairs = [(g, v) for g, versions in GROUP_VERSIONS.items() for v in versions]
    return pairs + [(GROUP, VERSION), (metrics.GROUP, metrics.VERSION)]


def apiservice(group_name: str, version: str) -> dict:
    name = f"{version}.{group_name}" if group_name else version
    return {"kind": "APIService", "apiVersion": GROUP_VERSION,
            "metadata": {"name": name, "uid": str(uuid.uuid5(uuid.NAMESPACE_URL, f"apiservice/{name}")),
                         "resourceVersion": "1", "creationTimestamp": _CREATED,
                         "labels": {"kube-aggregator.kubernetes.io/automanaged": "onstart"}},
            "spec": {"group": group_name, "version": version, "groupPriorityMinimum": 18000 if not group_name else 1000,
                     "versionPriority": 15, "service": None},
            "status": {"conditions": [{"type": "Available", "status": "True", "lastTransitionTime": _CREATED,
                                       "reason": "Local", "message": "Local APIServices are always available"}]}}


def _table(items: list[dict]) -> dict:
    cols = [{"name": "Name", "type": "string", "format": "name", "description": "Name", "priority": 0},
            {"name": "Service", "type": "string", "format": "", "description": "The backing service", "priority": 0},
            {"name": "Available", "type": "string", "format": "", "description": "Whether it is available", "priority": 0},
            {"name": "Age", "type": "string", "format": "", "description": "Age", "priority": 0}]
    rows = [{"cells": [o["metadata"]["name"], "Local", "True", "<unknown>"],
             "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": o["metadata"]}}
            for o in items]
    return {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {"resourceVersion": "1"},
            "columnDefinitions": cols, "rows": rows}


def handle(api: Any, req: Any, path: str) -> tuple[int, dict]:
    """``(status, body)`` for a request under ``/apis/apiregistration.k8s.io``."""
    segs = path.strip("/").split("/")[2:]
    if not segs:
        return 200, group() | {"kind": "APIGroup", "apiVersion": "v1"}
    if segs[0] != VERSION:
        raise err.path_not_found(path)
    if len(segs) == 1:
        return 200, resource_list()
    if segs[1] != "apiservices" or len(segs) > 4 or (len(segs) == 4 and segs[3] != "status"):
        raise err.path_not_found(path)
    name = segs[2] if len(segs) >= 3 else None
    if req.method != "GET":
        raise err.method_not_allowed(f"the server does not allow this method on the requested resource "
                                     f"({req.method} apiservices.{GROUP}): the emulator's APIServices are read-only")
    api._authorize(req, _Resource(), "get" if name else "list", None, name, "status" if len(segs) == 4 else None)
    items = [apiservice(g, v) for g, v in _served()]
    if name is not None:
        found = next((o for o in items if o["metadata"]["name"] == name), None)
        if found is None:
            raise err.not_found(GROUP, "apiservices", name)
        return 200, _table([found]) if req.wants_table else found
    if req.wants_table:
        return 200, _table(items)
    return 200, {"kind": "APIServiceList", "apiVersion": GROUP_VERSION, "metadata": {"resourceVersion": "1"},
                 "items": items}
