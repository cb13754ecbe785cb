"""Resource metrics: the ``metrics.k8s.io/v1beta1`` API (what metrics-server serves, what
``kubectl top`` reads) and the CPU utilisation the HPA controller scales on, from one
:class:`ResourceMeter`.

The meter measures the real processes: a container is its process group (the kubelet
starts each in its own), its CPU is the CPU seconds of every process in the group per
wall-clock second between two samples (the first sample: since the process started), its
memory the resident set of the group (a working set as the kubelet's cAdvisor reports it,
without page cache). The node is the whole machine (:mod:`psutil`). A sample is kept for
``resolution`` seconds of the cluster's clock (metrics-server's resolution), so ``kubectl top``
and the HPA read the same numbers, and a test with a fake clock decides when a new sample
is taken.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Callable
from typing import Any

import attrs
import psutil

from aml_emulator.cluster import exceptions as err
from aml_emulator.cluster.kubelet import RunningContainer
from aml_emulator.cluster.models import lookup, now_rfc3339
from aml_emulator.cluster.selectors import parse_label_selector, selector_to_string
from aml_emulator.cluster.store import Store

GROUP = "metrics.k8s.io"
VERSION = "v1beta1"
GROUP_VERSION = f"{GROUP}/{VERSION}"
PODS = lookup("", "v1", "pods")
NODES = lookup("", "v1", "nodes")
DEPLOYMENTS = lookup("apps", "v1", "deployments")

_QUANTITY = re.compile(r"^([+-]?[0-9.]+)([eE][+-]?[0-9]+|[numkMGTPE]i?|Ki|Mi|Gi|Ti|Pi|Ei)?$")
_FACTORS = {None: 1, "n": 1e-9, "u": 1e-6, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18,
            "Ki": 2 ** 10, "Mi": 2 ** 20, "Gi": 2 ** 30, "Ti": 2 ** 40, "Pi": 2 ** 50, "Ei": 2 ** 60}


def parse_quantity(text: Any) -> float | None:
    """A Kubernetes resource quantity (``100m``, ``0.5``, ``128Mi``, ``1e3``) as a number."""
    m = _QUANTITY.match(str(text).strip())
    if m is None:
        return None
    suffix = m.group(2)
    if suffix and suffix[0] in "eE":
        return float(m.group(1) + suffix)
    return float(m.group(1)) * _FACTORS[suffix]


def format_cpu(cores: float) -> str:
    return f"{max(0, round(cores * 1e9))}n"


def format_memory(bytes_: float) -> str:
    return f"{max(0, int(bytes_) // 1024)}Ki"


@attrs.frozen
class Usage:
    cpu: float  # cores
    memory: float  # bytes


@attrs.define
class _Sample:
    taken_at: float  # cluster clock
    wall: float  # time.monotonic() of the CPU reading
    cpu_seconds: float
    usage: Usage


def _group_members(pgid: int) -> list[psutil.Process]:
    out = []
    for proc in psutil.process_iter(["pid"]):
        try:
            if os.getpgid(proc.pid) == pgid and proc.status() != psutil.STATUS_ZOMBIE:
                out.append(proc)
        except (psutil.Error, OSError):
            continue
    return out


def _group_reading(pgid: int) -> tuple[float, float, float] | None:
    """(CPU seconds, resident bytes, start time) of a process group, or None if it is gone."""
    cpu = rss = 0.0
    started = None
    for proc in _group_members(pgid):
        try:
            with proc.oneshot():
                t = proc.cpu_times()
                cpu += t.user + t.system
                rss += proc.memory_info().rss
                if proc.pid == pgid:
                    started = proc.create_time()
        except psutil.Error:
            continue
    if started is None:
        return None
    return cpu, rss, started


class ResourceMeter:
    """CPU and memory of pods and of the node; see the module docstring.

    :param store: the cluster's objects (for a Deployment's pods and their CPU requests).
    :param containers: ``(namespace, pod, container) -> RunningContainer | None`` (the kubelet's).
    :param clock: the cluster's clock; a sample is reused until ``resolution`` has passed on it.
    """

    def __init__(self, store: Store, containers: Callable[[str, str, str], RunningContainer | None], *,
                 clock: Callable[[], float] = time.monotonic, resolution: float = 1.0) -> None:
        self.store = store
        self.containers = containers
        self.clock = clock
        self.resolution = resolution
        self._samples: dict[int, _Sample] = {}
        self._node: _Sample | None = None
        self._lock = threading.Lock()

    # -- measuring -------------------------------------------------------------------------

    def container_usage(self, namespace: str, pod: str, container: str) -> Usage | None:
        target = self.containers(namespace, pod, container)
        if target is None:
            return None
        with self._lock:
            now = self.clock()
            old = self._samples.get(target.pid)
            if old is not None and now - old.taken_at < self.resolution:
                return old.usage
            for gone in [p for p in self._samples if not psutil.pid_exists(p)]:
                del self._samples[gone]
            reading = _group_reading(target.pid)
            if reading is None:
                self._samples.pop(target.pid, None)
                return None
            cpu_seconds, rss, started = reading
            wall = time.monotonic()
            if old is not None and wall > old.wall:
                rate = (cpu_seconds - old.cpu_seconds) / (wall - old.wall)
            else:
                rate = cpu_seconds / max(time.time() - started, 1e-3)
            sample = _Sample(now, wall, cpu_seconds, Usage(max(rate, 0.0), rss))
            self._samples[target.pid] = sample
            return sample.usage

    def pod_usage(self, pod: dict) -> dict[str, Usage] | None:
        """Usage per container of a running pod (None until every container runs)."""
        m = pod["metadata"]
        out = {}
        for c in (pod.get("spec") or {}).get("containers") or []:
            usage = self.container_usage(m["namespace"], m["name"], c.get("name", ""))
            if usage is None:
                return None
            out[c["name"]] = usage
        return out or None

    def node_usage(self) -> Usage:
        with self._lock:
            now = self.clock()
            old = self._node
            if old is not None and now - old.taken_at < self.resolution:
                return old.usage
            t = psutil.cpu_times()
            busy = sum(t) - t.idle - getattr(t, "iowait", 0.0)
            wall = time.monotonic()
            if old is not None and wall > old.wall:
                rate = (busy - old.cpu_seconds) / (wall - old.wall)
            else:
                rate = busy / max(time.time() - psutil.boot_time(), 1e-3)
            vm = psutil.virtual_memory()
            self._node = _Sample(now, wall, busy, Usage(max(rate, 0.0), vm.total - vm.available))
            return self._node.usage

    # -- the HPA's view --------------------------------------------------------------------

    def deployment_utilization(self, namespace: str, deployment: str) -> float | None:
        """Average CPU utilisation, in percent of the pods' CPU requests, of a Deployment's
        running pods (the HPA's Resource metric); None when a pod has no CPU request or no
        pod has metrics yet, as the HPA then cannot compute it."""
        d = self.store.try_get(DEPLOYMENTS, namespace, deployment)
        if d is None:
            return None
        selector = ((d.get("spec") or {}).get("selector") or {})
        match = parse_label_selector(selector_to_string(selector))
        used = requested = 0.0
        for pod in self.store.list(PODS, namespace)[0]:
            if pod["metadata"].get("deletionTimestamp") or (pod.get("status") or {}).get("phase") != "Running":
                continue
            if not match(pod["metadata"].get("labels") or {}):
                continue
            usage = self.pod_usage(pod)
            if usage is None:
                continue
            for c in pod["spec"].get("containers") or []:
                request = parse_quantity(((c.get("resources") or {}).get("requests") or {}).get("cpu", ""))
                if not request:
                    return None
                requested += request
                used += usage[c["name"]].cpu
        if not requested:
            return None
        return 100.0 * used / requested

    # -- the API -------------------------------------------------------------------------

    def pod_metrics(self, pod: dict, usage: dict[str, Usage]) -> dict:
        m = pod["metadata"]
        return {"metadata": {"name": m["name"], "namespace": m["namespace"], "creationTimestamp": now_rfc3339(),
                             "labels": dict(m.get("labels") or {})},
                "timestamp": now_rfc3339(), "window": _window(self.resolution),
                "containers": [{"name": name, "usage": {"cpu": format_cpu(u.cpu), "memory": format_memory(u.memory)}}
                               for name, u in usage.items()]}

    def node_metrics(self, node: dict) -> dict:
        u = self.node_usage()
        m = node["metadata"]
        return {"metadata": {"name": m["name"], "creationTimestamp": now_rfc3339(), "labels": dict(m.get("labels") or {})},
                "timestamp": now_rfc3339(), "window": _window(self.resolution),
                "usage": {"cpu": format_cpu(u.cpu), "memory": format_memory(u.memory)}}


def _window(seconds: float) -> str:
    return f"{max(seconds, 1.0):g}s"


def node_capacity() -> dict[str, str]:
    """The machine as the node's capacity and allocatable (what ``kubectl top node`` divides by)."""
    return {"cpu": str(os.cpu_count() or 1), "memory": format_memory(psutil.virtual_memory().total),
            "pods": "110", "ephemeral-storage": format_memory(psutil.disk_usage("/").total)}


# ---------------------------------------------------------------------------- serving

def group() -> dict:
    """The APIGroup entry that makes ``kubectl top`` find the API in discovery."""
    v = {"groupVersion": GROUP_VERSION, "version": VERSION}
    return {"name": GROUP, "versions": [v], "preferredVersion": v}


def resource_list() -> dict:
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": GROUP_VERSION, "resources": [
        {"name": "nodes", "singularName": "", "namespaced": False, "kind": "NodeMetrics", "verbs": ["get", "list"]},
        {"name": "pods", "singularName": "", "namespaced": True, "kind": "PodMetrics", "verbs": ["get", "list"]}]}


def handle(api: Any, meter: ResourceMeter | None, req: Any, path: str) -> tuple[int, dict]:
    """``(status, body)`` for a request under ``/apis/metrics.k8s.io``."""
    segs = path.strip("/").split("/")[2:]  # after apis/metrics.k8s.io
    if not segs:
        return 200, group() | {"kind": "APIGroup", "apiVersion": "v1"}
    if segs[0] != VERSION:
        raise err.path_not_found(path)
    if len(segs) == 1:
        return 200, resource_list()
    if req.method != "GET":
        raise err.method_not_allowed(f"the server does not allow this method on the requested resource ({req.method} {path})")
    if meter is None:
        raise err.ApiError(503, "ServiceUnavailable", "the server is currently unable to handle the request (metrics)")
    rest = segs[1:]
    namespace = None
    if rest[0] == "namespaces" and len(rest) >= 3:
        namespace, rest = rest[1], rest[2:]
    if rest[0] not in ("pods", "nodes") or len(rest) > 2 or (rest[0] == "nodes" and namespace is not None):
        raise err.path_not_found(path)
    resource, name = rest[0], (rest[1] if len(rest) == 2 else None)
    api._authorize(req, _MetricsResource(resource), "get" if name else "list", namespace, name, None)
    labels = parse_label_selector(req.query.get("labelSelector"))
    if resource == "nodes":
        nodes = [n for n in api.store.list(NODES)[0] if labels((n["metadata"].get("labels") or {}))]
        if name is not None:
            node = next((n for n in nodes if n["metadata"]["name"] == name), None)
            if node is None:
                raise err.ApiError(404, "NotFound", f'nodemetrics.{GROUP} "{name}" not found')
            return 200, meter.node_metrics(node) | {"kind": "NodeMetrics", "apiVersion": GROUP_VERSION}
        return 200, {"kind": "NodeMetricsList", "apiVersion": GROUP_VERSION, "metadata": {},
                     "items": [meter.node_metrics(n) for n in nodes]}
    pods = [p for p in api.store.list(PODS, namespace)[0] if labels(p["metadata"].get("labels") or {})
            and (name is None or p["metadata"]["name"] == name)]
    items = []
    for p in pods:
        usage = meter.pod_usage(p)
        if usage is not None:
            items.append(meter.pod_metrics(p, usage))
    if name is not None:
        if not items:
            raise err.ApiError(404, "NotFound", f'podmetrics.{GROUP} "{namespace}/{name}" not found')
        return 200, items[0] | {"kind": "PodMetrics", "apiVersion": GROUP_VERSION}
    return 200, {"kind": "PodMetricsList", "apiVersion": GROUP_VERSION, "metadata": {}, "items": items}


@attrs.frozen
class _MetricsResource:
    """What RBAC checks a metrics request against: ``pods`` or ``nodes`` in ``metrics.k8s.io``."""

    plural: str
    group: str = GROUP
