"""The control loops: deployments → replica sets → pods (rolling update), the garbage
collector (ownerReferences, propagation policies), namespace teardown, endpoints and the
horizontal pod autoscaler.

One thread runs every loop level-triggered: it wakes on any store change (or each
``period``) and reconciles everything from the store's current state, so no cache can go
stale. Writes happen only when the desired object differs from the stored one.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import math
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from aml_emulator.cluster import exceptions as err
from aml_emulator.cluster.admission import admit_pod, ensure_default_service_account
from aml_emulator.cluster.models import (
    controller_ref,
    is_terminating,
    lookup,
    now_rfc3339,
    parse_rfc3339,
    pod_is_active,
    pod_is_ready,
)
from aml_emulator.cluster.selectors import label_selector_object
from aml_emulator.cluster.store import Store
from aml_emulator.cluster.strategies import default_pod_spec

log = logging.getLogger(__name__)

NS = lookup("", "v1", "namespaces")
PODS = lookup("", "v1", "pods")
SERVICES = lookup("", "v1", "services")
SERVICEACCOUNTS = lookup("", "v1", "serviceaccounts")
ENDPOINTS = lookup("", "v1", "endpoints")
EVENTS = lookup("", "v1", "events")
DEPLOYMENTS = lookup("apps", "v1", "deployments")
REPLICASETS = lookup("apps", "v1", "replicasets")
HPAS = lookup("autoscaling", "v2", "horizontalpodautoscalers")

HASH_LABEL = "pod-template-hash"
REVISION = "deployment.kubernetes.io/revision"
PORT_ANNOTATION = "emulator.aml/port"
PORTS_ANNOTATION = "emulator.aml/ports"
MAX_EVENTS = 1000
_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
_event_count = [0]  # events are pruned to MAX_EVENTS every 50 creations


def record_event(store: Store, obj: dict, kind: str, api_version: str, type_: str, reason: str,
                 message: str, component: str) -> None:
    """Create a core/v1 Event about ``obj`` (what ``kubectl describe`` shows)."""
    m = obj["metadata"]
    ts = now_rfc3339()
    ev = {"metadata": {"name": f"{m['name']}.{uuid.uuid4().hex[:16]}", "namespace": m.get("namespace") or "default"},
          "involvedObject": {"kind": kind, "namespace": m.get("namespace", ""), "name": m["name"],
                             "uid": m.get("uid"), "apiVersion": api_version,
                             "resourceVersion": m.get("resourceVersion")},
          "reason": reason, "message": message, "type": type_, "count": 1,
          "source": {"component": component}, "firstTimestamp": ts, "lastTimestamp": ts,
          "reportingComponent": component, "reportingInstance": "emulator-node"}
    try:
        store.create(EVENTS, ev)
        _event_count[0] += 1
        if _event_count[0] % 50:
            return
        events, _ = store.list(EVENTS)
        if len(events) > MAX_EVENTS:
            events.sort(key=lambda e: int(e["metadata"]["resourceVersion"]))
            for old in events[:len(events) - MAX_EVENTS]:
                store.remove_now(EVENTS, old["metadata"]["namespace"], old["metadata"]["name"])
    except err.ApiError:
        pass  # the namespace is gone: nothing to report on


def _prune(value: Any) -> Any:
    """Drop nulls and empty maps/lists, as Go's omitempty does, so that templates that
    differ only in such noise (``creationTimestamp: null``, ``annotations: {}``) hash alike."""
    if isinstance(value, dict):
        out = {k: _prune(v) for k, v in value.items()}
        return {k: v for k, v in out.items() if v is not None and v != {} and v != []}
    if isinstance(value, list):
        return [_prune(v) for v in value]
    return value


def template_hash(template: dict) -> str:
    t = copy.deepcopy(template)
    (t.get("metadata") or {}).get("labels", {}).pop(HASH_LABEL, None)
    t = _prune(t)
    digest = hashlib.sha256(json.dumps(t, sort_keys=True).encode()).digest()
    return "".join(_ALPHABET[b % len(_ALPHABET)] for b in digest[:10])


def resolve_int_or_percent(value: Any, total: int, round_up: bool) -> int:
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.endswith("%"):
        pct = int(value[:-1])
        return math.ceil(total * pct / 100) if round_up else math.floor(total * pct / 100)
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return 0


def _owned_by(obj: dict, uid: str) -> bool:
    ref = controller_ref(obj)
    return ref is not None and ref.get("uid") == uid


class ControllerManager:
    def __init__(self, store: Store, *, clock: Callable[[], float] = time.monotonic,
                 period: float = 0.2, metrics_source: Callable[[str, str], float | None] | None = None,
                 hpa_sync_period: float = 15.0, hpa_downscale_window: float | None = None) -> None:
        self.store = store
        self.clock = clock
        self.period = period
        self.metrics_source = metrics_source
        self.hpa_sync_period = hpa_sync_period
        self.hpa_downscale_window = hpa_downscale_window
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._hpa_last: dict[str, float] = {}
        self._hpa_recs: dict[str, list[tuple[float, int]]] = {}
        #: per HPA, (time, replicas added (+) or removed (-)) of its own rescales, for the
        #: behavior policies' periods
        self._hpa_changes: dict[str, list[tuple[float, int]]] = {}
        self._progress: dict[str, tuple[tuple, float]] = {}
        # replica set uid → (failed creations in a row, monotonic time of the next try)
        self._create_backoff: dict[str, tuple[int, float]] = {}

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="cluster-controllers", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        with self.store.changed:
            self.store.changed.notify_all()
        if self._thread is not None:
            self._thread.join(10)

    def _run(self) -> None:
        last_rv, last_full = -1, 0.0
        while not self._stop.is_set():
            rv = self.store.resource_version
            try:
                # Level-triggered, but an unchanged store needs a full pass only now and then
                # (time-based conditions such as the progress deadline); the autoscaler has
                # its own period.
                if rv != last_rv or time.monotonic() - last_full >= 1.0:
                    last_rv, last_full = rv, time.monotonic()
                    self.reconcile_once()
                else:
                    self.autoscale()
            except Exception:  # pragma: no cover - a controller bug must not kill the loop
                log.exception("controller loop failed")
            if self._stop.is_set():
                break
            with self.store.changed:
                if self.store.resource_version == rv:
                    self.store.changed.wait(self.period)
            time.sleep(0.02)  # coalesce bursts of writes

    def reconcile_once(self) -> None:
        self.garbage_collect()
        self.namespaces()
        self.service_accounts()
        for d in self.store.list(DEPLOYMENTS)[0]:
            self.sync_deployment(d)
        for rs in self.store.list(REPLICASETS)[0]:
            self.sync_replicaset(rs)
        # endpoints before deployment status: whoever sees a deployment Ready can already
        # reach its ready pods through the service
        self.endpoints()
        for d in self.store.list(DEPLOYMENTS)[0]:
            self.deployment_status(d)
        self.autoscale()

    # ------------------------------------------------------------------ garbage collector
    def garbage_collect(self) -> None:
        objs = self.store.all_objects()
        by_uid = {o["metadata"].get("uid"): (rt, o) for rt, o in objs}
        dependents: dict[str, list[tuple[Any, dict]]] = {}
        for rt, o in objs:
            for ref in o["metadata"].get("ownerReferences") or []:
                dependents.setdefault(ref.get("uid"), []).append((rt, o))
        for rt, o in objs:
            m = o["metadata"]
            refs = m.get("ownerReferences") or []
            if refs and not is_terminating(o):
                alive = [r for r in refs if r.get("uid") in by_uid]
                if not alive:
                    self._delete(rt, o, "Background")
                    continue
                for r in alive:
                    _, owner = by_uid[r["uid"]]
                    if "foregroundDeletion" in (owner["metadata"].get("finalizers") or []):
                        self._delete(rt, o, "Foreground")
                        break
            fins = m.get("finalizers") or []
            if not is_terminating(o):
                continue
            uid = m.get("uid")
            if "orphan" in fins:
                for drt, dep in dependents.get(uid, []):
                    self.store.mutate(drt, dep["metadata"].get("namespace", ""), dep["metadata"]["name"],
                                      lambda x, u=uid: self._drop_owner(x, u))
                self._drop_finalizer(rt, o, "orphan")
            elif "foregroundDeletion" in fins:
                live = [d for d in dependents.get(uid, [])]
                if not live:
                    self._drop_finalizer(rt, o, "foregroundDeletion")

    @staticmethod
    def _drop_owner(obj: dict, uid: str) -> dict:
        refs = [r for r in obj["metadata"].get("ownerReferences") or [] if r.get("uid") != uid]
        if refs:
            obj["metadata"]["ownerReferences"] = refs
        else:
            obj["metadata"].pop("ownerReferences", None)
        return obj

    def _drop_finalizer(self, rt, obj: dict, fin: str) -> None:
        def fn(x: dict) -> dict:
            fins = [f for f in x["metadata"].get("finalizers") or [] if f != fin]
            if fins:
                x["metadata"]["finalizers"] = fins
            else:
                x["metadata"].pop("finalizers", None)
            return x
        self.store.mutate(rt, obj["metadata"].get("namespace", ""), obj["metadata"]["name"], fn)

    def _delete(self, rt, obj: dict, propagation: str | None = None) -> None:
        try:
            self.store.delete(rt, obj["metadata"].get("namespace", ""), obj["metadata"]["name"],
                              propagation=propagation)
        except err.ApiError:
            pass

    # ------------------------------------------------------------------ namespaces
    def namespaces(self) -> None:
        for ns in self.store.list(NS)[0]:
            if not is_terminating(ns):
                continue
            name = ns["metadata"]["name"]
            remaining = 0
            for rt, o in self.store.all_objects():
                if rt.namespaced and o["metadata"].get("namespace") == name:
                    remaining += 1
                    if not is_terminating(o):
                        self._delete(rt, o, "Background")
            if remaining == 0 and not ns["metadata"].get("finalizers"):
                self.store.remove_now(NS, "", name)

    # ------------------------------------------------------------------ service accounts
    def service_accounts(self) -> None:
        """The serviceaccount controller: a ``default`` service account in every active
        namespace (recreated when deleted)."""
        have = {sa["metadata"]["namespace"] for sa in self.store.list(SERVICEACCOUNTS)[0]
                if sa["metadata"]["name"] == "default"}
        for ns in self.store.list(NS)[0]:
            if ns["metadata"]["name"] not in have and not is_terminating(ns):
                ensure_default_service_account(self.store, ns["metadata"]["name"])

    # ------------------------------------------------------------------ deployments
    def _owned_rs(self, d: dict) -> list[dict]:
        uid = d["metadata"]["uid"]
        rss = [rs for rs in self.store.list(REPLICASETS, d["metadata"]["namespace"])[0] if _owned_by(rs, uid)]
        rss.sort(key=lambda r: (int(r["metadata"].get("annotations", {}).get(REVISION, "0")), r["metadata"]["creationTimestamp"]))
        return rss

    def _rs_pods(self, rs: dict) -> list[dict]:
        uid = rs["metadata"]["uid"]
        return [p for p in self.store.list(PODS, rs["metadata"]["namespace"])[0] if _owned_by(p, uid)]

    @staticmethod
    def _available(pod: dict, min_ready: int) -> bool:
        """Ready for at least ``minReadySeconds`` (by the Ready condition's transition time)."""
        if not pod_is_ready(pod):
            return False
        if min_ready <= 0:
            return True
        for c in (pod.get("status") or {}).get("conditions") or []:
            if c.get("type") == "Ready":
                since = parse_rfc3339(c.get("lastTransitionTime"))
                return since is not None and time.time() - since >= min_ready
        return False

    def _counts(self, rs: dict) -> tuple[int, int]:
        """(active pods, available pods) of a replica set, straight from the pods."""
        active = [p for p in self._rs_pods(rs) if pod_is_active(p)]
        min_ready = int((rs.get("spec") or {}).get("minReadySeconds") or 0)
        return len(active), sum(1 for p in active if self._available(p, min_ready))

    def _set_rs_replicas(self, rs: dict, n: int, d: dict, surge: int) -> None:
        if rs["spec"].get("replicas") == n:
            return
        old_n = rs["spec"].get("replicas")

        def fn(x: dict) -> dict:
            x["spec"]["replicas"] = n
            a = x["metadata"].setdefault("annotations", {})
            a["deployment.kubernetes.io/desired-replicas"] = str(d["spec"]["replicas"])
            a["deployment.kubernetes.io/max-replicas"] = str(d["spec"]["replicas"] + surge)
            return x
        self.store.mutate(REPLICASETS, rs["metadata"]["namespace"], rs["metadata"]["name"], fn)
        rs["spec"]["replicas"] = n
        verb = "up" if n > (old_n or 0) else "down"
        record_event(self.store, d, "Deployment", "apps/v1", "Normal", "ScalingReplicaSet",
                     f"Scaled {verb} replica set {rs['metadata']['name']} from {old_n} to {n}", "deployment-controller")

    def sync_deployment(self, d: dict) -> None:
        if is_terminating(d):
            return
        spec = d["spec"]
        ns = d["metadata"]["namespace"]
        replicas = int(spec.get("replicas", 1))
        rss = self._owned_rs(d)
        h = template_hash(spec["template"])
        new_rs = next((r for r in rss if r["metadata"].get("labels", {}).get(HASH_LABEL) == h), None)
        old_rss = [r for r in rss if r is not new_rs]
        strategy = spec.get("strategy") or {}
        ru = strategy.get("rollingUpdate") or {}
        surge = resolve_int_or_percent(ru.get("maxSurge", "25%"), replicas, True)
        unavail = resolve_int_or_percent(ru.get("maxUnavailable", "25%"), replicas, False)
        if surge == 0 and unavail == 0:
            unavail = 1
        if spec.get("paused"):
            return
        if new_rs is None:
            revision = max([int(r["metadata"].get("annotations", {}).get(REVISION, "0")) for r in rss] + [0]) + 1
            active_old = any(r["spec"].get("replicas", 0) > 0 for r in old_rss)
            initial = 0 if active_old else replicas
            if strategy.get("type") == "Recreate" and active_old:
                initial = 0
            tmpl = copy.deepcopy(spec["template"])
            tmpl.setdefault("metadata", {}).setdefault("labels", {})[HASH_LABEL] = h
            sel = copy.deepcopy(spec["selector"])
            sel.setdefault("matchLabels", {})[HASH_LABEL] = h
            rs = {"metadata": {"name": f"{d['metadata']['name']}-{h}", "namespace": ns,
                               "labels": dict(tmpl["metadata"]["labels"]),
                               "annotations": {REVISION: str(revision),
                                               "deployment.kubernetes.io/desired-replicas": str(replicas),
                                               "deployment.kubernetes.io/max-replicas": str(replicas + surge)},
                               "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment",
                                                    "name": d["metadata"]["name"], "uid": d["metadata"]["uid"],
                                                    "controller": True, "blockOwnerDeletion": True}]},
                  "spec": {"replicas": initial, "minReadySeconds": spec.get("minReadySeconds", 0),
                           "selector": sel, "template": tmpl}}
            try:
                new_rs = self.store.create(REPLICASETS, rs)
            except err.ApiError:
                return
            record_event(self.store, d, "Deployment", "apps/v1", "Normal", "ScalingReplicaSet",
                         f"Scaled up replica set {rs['metadata']['name']} from 0 to {initial}", "deployment-controller")
            self.store.mutate(DEPLOYMENTS, ns, d["metadata"]["name"],
                              lambda x: self._annotate(x, REVISION, str(revision)))
        else:
            rev = new_rs["metadata"].get("annotations", {}).get(REVISION)
            if rev and d["metadata"].get("annotations", {}).get(REVISION) != rev:
                self.store.mutate(DEPLOYMENTS, ns, d["metadata"]["name"], lambda x: self._annotate(x, REVISION, rev))
        active_old = [r for r in old_rss if r["spec"].get("replicas", 0) > 0]
        if strategy.get("type") == "Recreate":
            for r in active_old:
                self._set_rs_replicas(r, 0, d, 0)
            if any(self._counts(r)[0] for r in old_rss):
                return
            self._set_rs_replicas(new_rs, replicas, d, 0)
        elif not active_old:
            self._set_rs_replicas(new_rs, replicas, d, surge)
        else:
            self._rolling(d, new_rs, old_rss, replicas, surge, unavail)
        self._cleanup_history(d, new_rs, old_rss)

    def _rolling(self, d, new_rs, old_rss, replicas, surge, unavail) -> None:
        all_rs = old_rss + [new_rs]
        # scale up the new replica set within maxSurge
        total = sum(r["spec"].get("replicas", 0) for r in all_rs)
        max_total = replicas + surge
        new_n = new_rs["spec"].get("replicas", 0)
        if new_n > replicas:
            self._set_rs_replicas(new_rs, replicas, d, surge)
        elif total < max_total:
            up = min(max_total - total, replicas - new_n)
            if up > 0:
                self._set_rs_replicas(new_rs, new_n + up, d, surge)
        # scale down old replica sets within maxUnavailable
        min_available = replicas - unavail
        total = sum(r["spec"].get("replicas", 0) for r in all_rs)
        _, new_avail = self._counts(new_rs)
        new_unavailable = new_rs["spec"].get("replicas", 0) - new_avail
        max_scaled_down = total - min_available - new_unavailable
        if max_scaled_down <= 0:
            return
        cleaned = 0
        for r in old_rss:  # first the old pods that are not available anyway
            if cleaned >= max_scaled_down:
                break
            n = r["spec"].get("replicas", 0)
            _, avail = self._counts(r)
            if n == 0 or n <= avail:
                continue
            down = min(max_scaled_down - cleaned, n - avail)
            self._set_rs_replicas(r, n - down, d, surge)
            cleaned += down
        available = sum(self._counts(r)[1] for r in all_rs)
        budget = available - min_available
        for r in old_rss:
            if budget <= 0:
                break
            n = r["spec"].get("replicas", 0)
            if n == 0:
                continue
            down = min(n, budget)
            self._set_rs_replicas(r, n - down, d, surge)
            budget -= down

    def _cleanup_history(self, d, new_rs, old_rss) -> None:
        limit = d["spec"].get("revisionHistoryLimit", 10)
        idle = [r for r in old_rss if r["spec"].get("replicas", 0) == 0 and not self._rs_pods(r)]
        for r in idle[:max(0, len(idle) - limit)]:
            self._delete(REPLICASETS, r, "Background")

    @staticmethod
    def _annotate(x: dict, k: str, v: str) -> dict | None:
        a = x["metadata"].setdefault("annotations", {})
        if a.get(k) == v:
            return None
        a[k] = v
        return x

    def deployment_status(self, d: dict) -> None:
        if is_terminating(d):
            return
        spec = d["spec"]
        replicas = int(spec.get("replicas", 1))
        rss = self._owned_rs(d)
        h = template_hash(spec["template"])
        total = updated = ready = available = 0
        min_ready = int(spec.get("minReadySeconds") or 0)
        for r in rss:
            pods = [p for p in self._rs_pods(r) if pod_is_active(p)]
            total += len(pods)
            ready += sum(1 for p in pods if pod_is_ready(p))
            available += sum(1 for p in pods if self._available(p, min_ready))
            if r["metadata"].get("labels", {}).get(HASH_LABEL) == h:
                updated = len(pods)
        ru = (spec.get("strategy") or {}).get("rollingUpdate") or {}
        unavail = resolve_int_or_percent(ru.get("maxUnavailable", "25%"), replicas, False)
        old = d.get("status") or {}
        conds = {c["type"]: c for c in old.get("conditions") or []}
        now = now_rfc3339()

        def cond(type_: str, status: str, reason: str, message: str) -> dict:
            prev = conds.get(type_)
            if prev and prev.get("status") == status and prev.get("reason") == reason:
                return prev | {"message": message}
            return {"type": type_, "status": status, "reason": reason, "message": message,
                    "lastUpdateTime": now, "lastTransitionTime": now if not prev or prev.get("status") != status else prev.get("lastTransitionTime", now)}
        new_rs_name = next((r["metadata"]["name"] for r in rss if r["metadata"].get("labels", {}).get(HASH_LABEL) == h), d["metadata"]["name"])
        is_available = available >= replicas - unavail
        complete = updated == replicas and total == updated and available >= updated
        # progress deadline: no change in the rollout's counts for progressDeadlineSeconds
        uid = d["metadata"]["uid"]
        signature = (d["metadata"].get("generation"), total, updated, ready, h)
        now_clock = self.clock()
        last = self._progress.get(uid)
        if last is None or last[0] != signature:
            self._progress[uid] = last = (signature, now_clock)
        deadline = spec.get("progressDeadlineSeconds", 600)
        stalled = (not complete and not spec.get("paused") and deadline is not None
                   and now_clock - last[1] > float(deadline))
        if stalled:
            progressing = cond("Progressing", "False", "ProgressDeadlineExceeded",
                               f'ReplicaSet "{new_rs_name}" has timed out progressing.')
        else:
            progressing = cond("Progressing", "True", "NewReplicaSetAvailable" if complete else "ReplicaSetUpdated",
                               f'ReplicaSet "{new_rs_name}" has successfully progressed.' if complete else f'ReplicaSet "{new_rs_name}" is progressing.')
        failed = next((c for r in rss for c in (r.get("status") or {}).get("conditions") or []
                       if c.get("type") == "ReplicaFailure" and c.get("status") == "True"), None)
        conditions = [
            cond("Available", "True" if is_available else "False",
                 "MinimumReplicasAvailable" if is_available else "MinimumReplicasUnavailable",
                 "Deployment has minimum availability." if is_available else "Deployment does not have minimum availability."),
            progressing,
        ]
        if failed is not None:  # as the deployment controller's getReplicaFailures
            conditions.append(cond("ReplicaFailure", "True", failed.get("reason", "FailedCreate"), failed.get("message", "")))
        status = {"observedGeneration": d["metadata"].get("generation", 1), "replicas": total,
                  "updatedReplicas": updated, "readyReplicas": ready, "availableReplicas": available,
                  "unavailableReplicas": max(0, max(replicas, total) - available), "conditions": conditions}
        for k in ("readyReplicas", "availableReplicas", "unavailableReplicas", "updatedReplicas", "replicas"):
            if status[k] == 0:
                del status[k]
        if status != old:
            self.store.mutate(DEPLOYMENTS, d["metadata"]["namespace"], d["metadata"]["name"],
                              lambda x: x | {"status": status}, subresource="status")

    # ------------------------------------------------------------------ replica sets
    def sync_replicaset(self, rs: dict) -> None:
        if is_terminating(rs):
            return
        ns, name = rs["metadata"]["namespace"], rs["metadata"]["name"]
        pods = self._rs_pods(rs)
        active = [p for p in pods if pod_is_active(p)]
        want = int(rs["spec"].get("replicas", 0))
        diff = want - len(active)
        failure: str | None = None
        uid = rs["metadata"]["uid"]
        if diff > 0:
            failures, next_try = self._create_backoff.get(uid, (0, 0.0))
            if time.monotonic() < next_try:
                failure = next((c.get("message") for c in (rs.get("status") or {}).get("conditions") or []
                                if c.get("type") == "ReplicaFailure"), None)
            else:
                for _ in range(min(diff, 20)):
                    failure = self._create_pod(rs)
                    if failure is not None:
                        break
                if failure is None:
                    self._create_backoff.pop(uid, None)
                else:
                    # as the controller's rate-limited requeue: 0.5 s, 1 s, 2 s ... 8 s
                    self._create_backoff[uid] = (failures + 1, time.monotonic() + min(8.0, 0.5 * 2 ** failures))
        else:
            self._create_backoff.pop(uid, None)
        if diff < 0:
            def rank(p: dict) -> tuple:
                phase_rank = {"Pending": 0, "Unknown": 1, "Running": 2}.get((p.get("status") or {}).get("phase", "Pending"), 0)
                return (pod_is_ready(p), phase_rank, [-ord(c) for c in p["metadata"].get("creationTimestamp", "")],
                        -int(p["metadata"]["resourceVersion"]))
            for p in sorted(active, key=rank)[:-diff]:
                self._delete(PODS, p)
                record_event(self.store, rs, "ReplicaSet", "apps/v1", "Normal", "SuccessfulDelete",
                             f"Deleted pod: {p['metadata']['name']}", "replicaset-controller")
            active = [p for p in self._rs_pods(rs) if pod_is_active(p)]
        ready = sum(1 for p in active if pod_is_ready(p))
        min_ready = int(rs["spec"].get("minReadySeconds") or 0)
        sel = label_selector_object(rs["spec"].get("selector"))
        status = {"replicas": len(active),
                  "fullyLabeledReplicas": sum(1 for p in active if sel(p["metadata"].get("labels") or {})),
                  "readyReplicas": ready, "availableReplicas": sum(1 for p in active if self._available(p, min_ready)),
                  "observedGeneration": rs["metadata"].get("generation", 1)}
        for k in ("readyReplicas", "availableReplicas", "fullyLabeledReplicas"):
            if status[k] == 0:
                del status[k]
        old_conds = [c for c in (rs.get("status") or {}).get("conditions") or [] if c.get("type") == "ReplicaFailure"]
        if failure is not None:
            prev = old_conds[0] if old_conds else None
            status["conditions"] = [prev if prev and prev.get("message") == failure else {
                "type": "ReplicaFailure", "status": "True", "reason": "FailedCreate", "message": failure,
                "lastTransitionTime": prev["lastTransitionTime"] if prev else now_rfc3339()}]
        if status != (rs.get("status") or {}):
            self.store.mutate(REPLICASETS, ns, name, lambda x: x | {"status": status}, subresource="status")

    def _create_pod(self, rs: dict) -> str | None:
        """Create one pod of ``rs``; the error message when the API would refuse it."""
        tmpl = copy.deepcopy(rs["spec"].get("template") or {})
        tm = tmpl.get("metadata") or {}
        spec = tmpl.get("spec") or {}
        default_pod_spec(spec)
        pod = {"apiVersion": "v1", "kind": "Pod",
               "metadata": {"generateName": rs["metadata"]["name"] + "-", "namespace": rs["metadata"]["namespace"],
                            "labels": tm.get("labels") or {},
                            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                                                 "name": rs["metadata"]["name"], "uid": rs["metadata"]["uid"],
                                                 "controller": True, "blockOwnerDeletion": True}]},
               "spec": spec, "status": {"phase": "Pending", "qosClass": "BestEffort"}}
        if tm.get("annotations"):
            pod["metadata"]["annotations"] = tm["annotations"]
        try:
            admit_pod(self.store, pod)
            created = self.store.create(PODS, pod)
        except err.ApiError as e:
            if e.code == 403:
                record_event(self.store, rs, "ReplicaSet", "apps/v1", "Warning", "FailedCreate",
                             f"Error creating: {e.message}", "replicaset-controller")
            return e.message
        record_event(self.store, rs, "ReplicaSet", "apps/v1", "Normal", "SuccessfulCreate",
                     f"Created pod: {created['metadata']['name']}", "replicaset-controller")
        return None

    # ------------------------------------------------------------------ endpoints
    @staticmethod
    def _host_port(pod: dict, target: Any) -> int | None:
        ann = pod["metadata"].get("annotations") or {}
        try:
            mapping = {int(k): int(v) for k, v in json.loads(ann.get(PORTS_ANNOTATION, "{}")).items()}
        except (ValueError, AttributeError):
            mapping = {}
        if isinstance(target, str) and not target.isdigit():
            for c in pod["spec"].get("containers") or []:
                for p in c.get("ports") or []:
                    if p.get("name") == target:
                        return mapping.get(p.get("containerPort"))
            return None
        if target is not None and int(target) in mapping:
            return mapping[int(target)]
        main = ann.get(PORT_ANNOTATION)
        return int(main) if main else None

    def endpoints(self) -> None:
        services = self.store.list(SERVICES)[0]
        wanted: set[tuple[str, str]] = set()
        for svc in services:
            sel = (svc.get("spec") or {}).get("selector")
            ns, name = svc["metadata"]["namespace"], svc["metadata"]["name"]
            if not sel:
                continue
            wanted.add((ns, name))
            pods = [p for p in self.store.list(PODS, ns)[0]
                    if all((p["metadata"].get("labels") or {}).get(k) == v for k, v in sel.items())
                    and not is_terminating(p) and (p.get("status") or {}).get("podIP")
                    and (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")]
            subsets = []
            for p in sorted(pods, key=lambda p: p["metadata"]["name"]):
                ports = []
                for sp in svc["spec"].get("ports") or []:
                    hp = self._host_port(p, sp.get("targetPort", sp.get("port")))
                    if hp is None:
                        continue
                    ep = {"port": hp, "protocol": sp.get("protocol", "TCP")}
                    if sp.get("name"):
                        ep["name"] = sp["name"]
                    ports.append(ep)
                if not ports:
                    continue
                addr = {"ip": p["status"]["podIP"], "nodeName": p["spec"].get("nodeName", "emulator-node"),
                        "targetRef": {"kind": "Pod", "namespace": ns, "name": p["metadata"]["name"],
                                      "uid": p["metadata"]["uid"]}}
                key = "addresses" if pod_is_ready(p) else "notReadyAddresses"
                subsets.append({key: [addr], "ports": ports})
            current = self.store.try_get(ENDPOINTS, ns, name)
            body = {"metadata": {"name": name, "namespace": ns}, "subsets": subsets}
            if svc["metadata"].get("labels"):
                body["metadata"]["labels"] = svc["metadata"]["labels"]
            if not subsets:
                body.pop("subsets")
            if current is None:
                try:
                    self.store.create(ENDPOINTS, body)
                except err.ApiError:
                    pass
            elif current.get("subsets") != body.get("subsets"):
                def fn(x: dict, b: dict = body) -> dict:
                    if "subsets" in b:
                        x["subsets"] = b["subsets"]
                    else:
                        x.pop("subsets", None)
                    return x
                self.store.mutate(ENDPOINTS, ns, name, fn)
        for ep in self.store.list(ENDPOINTS)[0]:
            key = (ep["metadata"]["namespace"], ep["metadata"]["name"])
            if key not in wanted and self.store.try_get(SERVICES, *key) is None \
                    and (ep["metadata"].get("labels") or {}).get("endpoints.emulator.aml/managed") != "false":
                if self._managed_endpoints(ep):
                    self.store.remove_now(ENDPOINTS, *key)

    @staticmethod
    def _managed_endpoints(ep: dict) -> bool:
        return all(a.get("targetRef", {}).get("kind") == "Pod"
                   for s in ep.get("subsets") or [] for a in (s.get("addresses") or []) + (s.get("notReadyAddresses") or []))

    # ------------------------------------------------------------------ autoscaler
    def autoscale(self) -> None:
        now = self.clock()
        for hpa in self.store.list(HPAS)[0]:
            key = f"{hpa['metadata']['namespace']}/{hpa['metadata']['name']}/{hpa['metadata']['uid']}"
            last = self._hpa_last.get(key)
            if last is not None and now - last < self.hpa_sync_period:
                self._hpa_follow_target(hpa)
                continue
            self._hpa_last[key] = now
            try:
                self._sync_hpa(hpa, key, now)
            except err.ApiError:
                pass

    def _hpa_follow_target(self, hpa: dict) -> None:
        """Between two syncs, keep ``status.currentReplicas`` (kubectl's REPLICAS column) equal
        to the target's count when someone else changed it (``kubectl scale``, or the HPA's
        own last rescale), rather than showing the old count until the next sync; no scaling
        decision is taken here."""
        ref = hpa["spec"].get("scaleTargetRef") or {}
        target_rt = {"Deployment": DEPLOYMENTS, "ReplicaSet": REPLICASETS}.get(ref.get("kind"))
        target = self.store.try_get(target_rt, hpa["metadata"]["namespace"], ref.get("name", "")) if target_rt else None
        status = hpa.get("status") or {}
        if target is None or not status:
            return
        current = int(target["spec"].get("replicas", 0))
        if status.get("currentReplicas") != current:
            self.store.mutate(HPAS, hpa["metadata"]["namespace"], hpa["metadata"]["name"],
                              lambda x: x | {"status": {**(x.get("status") or {}), "currentReplicas": current}},
                              subresource="status")

    def _sync_hpa(self, hpa: dict, key: str, now: float) -> None:
        spec = hpa["spec"]
        ns = hpa["metadata"]["namespace"]
        ref = spec.get("scaleTargetRef") or {}
        target_rt = {"Deployment": DEPLOYMENTS, "ReplicaSet": REPLICASETS}.get(ref.get("kind"))
        conds: list[dict] = []
        ts = now_rfc3339()
        status: dict[str, Any] = {"currentReplicas": 0, "desiredReplicas": 0}
        if (hpa.get("status") or {}).get("lastScaleTime"):
            status["lastScaleTime"] = hpa["status"]["lastScaleTime"]
        target = self.store.try_get(target_rt, ns, ref.get("name", "")) if target_rt else None
        if target is None:
            conds.append({"type": "AbleToScale", "status": "False", "reason": "FailedGetScale",
                          "message": f'the HPA controller was unable to get the target\'s current scale: {(ref.get("kind") or "").lower()}s "{ref.get("name")}" not found'})
            return self._hpa_status(hpa, status, conds, ts)
        current = int(target["spec"].get("replicas", 0))
        status["currentReplicas"] = status["desiredReplicas"] = current
        conds.append({"type": "AbleToScale", "status": "True", "reason": "SucceededGetScale",
                      "message": "the HPA controller was able to get the target's current scale"})
        if current == 0:
            conds.append({"type": "ScalingActive", "status": "False", "reason": "ScalingDisabled",
                          "message": "scaling is disabled since the replica count of the target is zero"})
            return self._hpa_status(hpa, status, conds, ts)
        metric = next((m for m in spec.get("metrics") or [] if m.get("type") == "Resource"), None)
        target_util = ((metric or {}).get("resource") or {}).get("target", {}).get("averageUtilization")
        source = self.metrics_source
        util = source(ns, ref.get("name", "")) if source is not None else None
        if metric is None or target_util is None or util is None:
            conds.append({"type": "ScalingActive", "status": "False", "reason": "FailedGetResourceMetric",
                          "message": "the HPA was unable to compute the replica count: no metrics returned from the metrics source"
                          if metric is not None else "the HPA only understands Resource metrics with a Utilization target in the emulator"})
            return self._hpa_status(hpa, status, conds, ts)
        status["currentMetrics"] = [{"type": "Resource", "resource": {
            "name": metric["resource"].get("name", "cpu"), "current": {"averageUtilization": int(round(util))}}}]
        ratio = util / float(target_util)
        desired = current if abs(ratio - 1.0) <= 0.1 else math.ceil(current * ratio)
        lo, hi = int(spec.get("minReplicas", 1)), int(spec["maxReplicas"])
        limited = desired > hi or desired < lo
        desired = max(lo, min(hi, desired))
        behavior = spec.get("behavior") or {}
        down_window = (behavior.get("scaleDown") or {}).get("stabilizationWindowSeconds")
        if down_window is None:
            down_window = self.hpa_downscale_window if self.hpa_downscale_window is not None else 300
        up_window = (behavior.get("scaleUp") or {}).get("stabilizationWindowSeconds") or 0
        recs = self._hpa_recs.setdefault(key, [])
        recs.append((now, desired))
        horizon = max(down_window, up_window)
        recs[:] = [(t, r) for t, r in recs if now - t <= horizon]
        up_rec = min(r for t, r in recs if now - t <= up_window)
        down_rec = max(r for t, r in recs if now - t <= down_window)
        final = current
        if current < up_rec:
            final = up_rec
        elif current > down_rec:
            final = down_rec
        changes = self._hpa_changes.setdefault(key, [])
        longest = max((int(pol.get("periodSeconds", 15)) for rules in behavior.values() if isinstance(rules, dict)
                       for pol in rules.get("policies") or []), default=15)
        changes[:] = [(t, n) for t, n in changes if now - t <= max(longest, 15)]
        unlimited = final
        final = limit_by_policies(current, final, behavior, changes, now)
        conds.append({"type": "ScalingActive", "status": "True", "reason": "ValidMetricFound",
                      "message": "the HPA was able to successfully calculate a replica count from cpu resource utilization (percentage of request)"})
        if final != unlimited:
            conds.append({"type": "ScalingLimited", "status": "True",
                          "reason": "ScaleUpLimit" if unlimited > current else "ScaleDownLimit",
                          "message": "the desired replica count is "
                                     f"{'increasing' if unlimited > current else 'decreasing'} faster than the maximum scale rate"})
        else:
            conds.append({"type": "ScalingLimited", "status": "True" if limited else "False",
                          "reason": "TooManyReplicas" if limited and desired == hi else "TooFewReplicas" if limited else "DesiredWithinRange",
                          "message": "the desired count is within the acceptable range" if not limited else "the desired replica count is out of range"})
        status["desiredReplicas"] = final
        if final != current:
            changes.append((now, final - current))
            self.store.mutate(target_rt, ns, ref["name"], lambda x: (x["spec"].__setitem__("replicas", final), x)[1])
            status["lastScaleTime"] = ts
            record_event(self.store, hpa, "HorizontalPodAutoscaler", "autoscaling/v2", "Normal", "SuccessfulRescale",
                         f"New size: {final}; reason: cpu resource utilization (percentage of request) {'above' if final > current else 'below'} target",
                         "horizontal-pod-autoscaler")
        self._hpa_status(hpa, status, conds, ts)

    def _hpa_status(self, hpa: dict, status: dict, conds: list[dict], ts: str) -> None:
        old = {c["type"]: c for c in (hpa.get("status") or {}).get("conditions") or []}
        for c in conds:
            prev = old.get(c["type"])
            c["lastTransitionTime"] = prev["lastTransitionTime"] if prev and prev.get("status") == c["status"] else ts
        status["conditions"] = conds
        status["observedGeneration"] = hpa["metadata"].get("generation", 1)
        if status != (hpa.get("status") or {}):
            self.store.mutate(HPAS, hpa["metadata"]["namespace"], hpa["metadata"]["name"],
                              lambda x: x | {"status": status}, subresource="status")


#: autoscaling/v2's defaults for ``behavior`` rules a HorizontalPodAutoscaler leaves out
DEFAULT_SCALE_UP = {"selectPolicy": "Max", "policies": [
    {"type": "Percent", "value": 100, "periodSeconds": 15}, {"type": "Pods", "value": 4, "periodSeconds": 15}]}
DEFAULT_SCALE_DOWN = {"selectPolicy": "Max", "policies": [{"type": "Percent", "value": 100, "periodSeconds": 15}]}


def limit_by_policies(current: int, proposed: int, behavior: dict, changes: list[tuple[float, int]],
                      now: float) -> int:
    """``proposed`` limited by the HPA's ``behavior`` scaling policies, as the HPA controller
    does: each policy allows, from the count at the start of its period (``periodSeconds``
    back, undoing the rescales since), ``value`` more (or fewer) pods, or ``value`` percent;
    ``selectPolicy`` Max takes the policy allowing the biggest change, Min the smallest, and
    Disabled forbids scaling that way. ``changes``: (time, replicas added or removed)."""
    if proposed == current:
        return current
    up = proposed > current
    rules = behavior.get("scaleUp" if up else "scaleDown") or {}
    defaults = DEFAULT_SCALE_UP if up else DEFAULT_SCALE_DOWN
    select = rules.get("selectPolicy") or defaults["selectPolicy"]
    if select == "Disabled":
        return current
    limits = []
    for policy in rules.get("policies") or defaults["policies"]:
        period = int(policy.get("periodSeconds", 15))
        moved = sum(n for t, n in changes if now - t < period and (n > 0) == up)
        start = current - moved
        value = int(policy.get("value", 0))
        if policy.get("type") == "Pods":
            limits.append(start + value if up else start - value)
        elif up:
            limits.append(math.ceil(start * (1 + value / 100)))
        else:
            limits.append(math.ceil(start * (1 - value / 100)))
    if not limits:
        return proposed
    if up:
        bound = max(limits) if select == "Max" else min(limits)
        return max(current, min(proposed, bound))
    bound = min(limits) if select == "Max" else max(limits)
    return min(current, max(proposed, bound))
