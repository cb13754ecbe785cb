"""The resource types the cluster emulator serves, and the small helpers on objects.

One :class:`ResourceType` per served (group, version, plural). Objects themselves are plain
JSON dicts, exactly as they travel on the wire; the store keeps them keyed by
``(group, plural, namespace, name)``.
"""

from __future__ import annotations

import datetime as _dt

import attrs

ALL_VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]


@attrs.frozen
class ResourceType:
    group: str
    version: str
    plural: str
    singular: str
    kind: str
    namespaced: bool = True
    short_names: tuple[str, ...] = ()
    verbs: tuple[str, ...] = tuple(ALL_VERBS)
    subresources: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    has_status: bool = False
    has_spec_generation: bool = False

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def group_version(self) -> str:
        return self.api_version

    @property
    def store_key(self) -> tuple[str, str]:
        return (self.group, self.plural)


_CORE = ""
RBAC_GROUP = "rbac.authorization.k8s.io"
RESOURCES: list[ResourceType] = [
    ResourceType(_CORE, "v1", "namespaces", "namespace", "Namespace", namespaced=False,
                 short_names=("ns",), verbs=("create", "delete", "get", "list", "patch", "update", "watch"),
                 subresources=("status",), has_status=True),
    ResourceType(_CORE, "v1", "pods", "pod", "Pod", short_names=("po",),
                 subresources=("log", "status", "exec", "portforward"), categories=("all",), has_status=True),
    ResourceType(_CORE, "v1", "services", "service", "Service", short_names=("svc",),
                 verbs=("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"),
                 subresources=("status",), categories=("all",), has_status=True),
    ResourceType(_CORE, "v1", "endpoints", "endpoints", "Endpoints", short_names=("ep",)),
    ResourceType(_CORE, "v1", "secrets", "secret", "Secret"),
    ResourceType(_CORE, "v1", "configmaps", "configmap", "ConfigMap", short_names=("cm",)),
    ResourceType(_CORE, "v1", "events", "event", "Event", short_names=("ev",)),
    ResourceType(_CORE, "v1", "nodes", "node", "Node", namespaced=False, short_names=("no",),
                 verbs=("get", "list", "watch"), subresources=("status",), has_status=True),
    ResourceType(_CORE, "v1", "serviceaccounts", "serviceaccount", "ServiceAccount", short_names=("sa",),
                 subresources=("token",)),
    ResourceType("apps", "v1", "deployments", "deployment", "Deployment", short_names=("deploy",),
                 subresources=("scale", "status"), categories=("all",), has_status=True,
                 has_spec_generation=True),
    ResourceType("apps", "v1", "replicasets", "replicaset", "ReplicaSet", short_names=("rs",),
                 subresources=("scale", "status"), categories=("all",), has_status=True,
                 has_spec_generation=True),
    ResourceType("autoscaling", "v2", "horizontalpodautoscalers", "horizontalpodautoscaler",
                 "HorizontalPodAutoscaler", short_names=("hpa",), subresources=("status",),
                 categories=("all",), has_status=True, has_spec_generation=True),
    # served from the stored autoscaling/v2 objects (see conversion.py)
    ResourceType("autoscaling", "v1", "horizontalpodautoscalers", "horizontalpodautoscaler",
                 "HorizontalPodAutoscaler", short_names=("hpa",), subresources=("status",),
                 categories=("all",), has_status=True, has_spec_generation=True),
    ResourceType(RBAC_GROUP, "v1", "roles", "role", "Role"),
    ResourceType(RBAC_GROUP, "v1", "rolebindings", "rolebinding", "RoleBinding"),
    ResourceType(RBAC_GROUP, "v1", "clusterroles", "clusterrole", "ClusterRole", namespaced=False),
    ResourceType(RBAC_GROUP, "v1", "clusterrolebindings", "clusterrolebinding", "ClusterRoleBinding",
                 namespaced=False),
]

GROUP_VERSIONS: dict[str, list[str]] = {}
for _r in RESOURCES:
    GROUP_VERSIONS.setdefault(_r.group, [])
    if _r.version not in GROUP_VERSIONS[_r.group]:
        GROUP_VERSIONS[_r.group].append(_r.version)

_BY_PATH = {(r.group, r.version, r.plural): r for r in RESOURCES}
_BY_KIND: dict[tuple[str, str], ResourceType] = {}
_BY_STORE: dict[tuple[str, str], ResourceType] = {}
for _r in RESOURCES:  # the first version listed is the storage (and preferred) version
    _BY_KIND.setdefault((_r.group, _r.kind), _r)
    _BY_STORE.setdefault((_r.group, _r.plural), _r)


def lookup(group: str, version: str, plural: str) -> ResourceType | None:
    return _BY_PATH.get((group, version, plural))


def by_kind(group: str, kind: str) -> ResourceType | None:
    return _BY_KIND.get((group, kind))


def by_store_key(group: str, plural: str) -> ResourceType:
    return _BY_STORE[(group, plural)]


def resources_of(group: str, version: str) -> list[ResourceType]:
    return [r for r in RESOURCES if r.group == group and r.version == version]


# ---------------------------------------------------------------- object helpers

def now_rfc3339() -> str:
    return _dt.datetime.now(_dt.UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_rfc3339(text: str | None) -> float | None:
    if not text:
        return None
    try:
        return _dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(
            tzinfo=_dt.UTC).timestamp()
    except ValueError:
        return None


def meta(obj: dict) -> dict:
    return obj.setdefault("metadata", {})


def labels_of(obj: dict) -> dict[str, str]:
    return (obj.get("metadata") or {}).get("labels") or {}


def owner_uids(obj: dict) -> list[str]:
    return [o.get("uid") for o in (obj.get("metadata") or {}).get("ownerReferences") or []]


def controller_ref(obj: dict) -> dict | None:
    for o in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if o.get("controller"):
            return o
    return None


def is_terminating(obj: dict) -> bool:
    return bool((obj.get("metadata") or {}).get("deletionTimestamp"))


def pod_is_ready(pod: dict) -> bool:
    for c in (pod.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready":
            return c.get("status") == "True"
    return False


def pod_is_active(pod: dict) -> bool:
    return not is_terminating(pod) and (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed")
