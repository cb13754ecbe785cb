"""Known-field schemas for ``fieldValidation`` (Strict → 400, Warn → a ``Warning``
header), so a typo such as ``comand`` is reported instead of silently dropped.

A schema is a dict of field → sub-schema; ``ANY`` accepts whatever is there, and a
one-element list ``[schema]`` describes the items of a list.
"""

from __future__ import annotations

from typing import Any

ANY: dict = {}
_OPEN = None  # a map with arbitrary keys (labels, data ...)

METADATA = {k: _OPEN for k in (
    "name", "generateName", "namespace", "selfLink", "uid", "resourceVersion", "generation",
    "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "labels",
    "annotations", "ownerReferences", "finalizers", "managedFields")}

PROBE = {k: _OPEN for k in ("exec", "httpGet", "tcpSocket", "grpc", "initialDelaySeconds", "timeoutSeconds",
                            "periodSeconds", "successThreshold", "failureThreshold", "terminationGracePeriodSeconds")}
CONTAINER = {k: _OPEN for k in (
    "name", "image", "command", "args", "workingDir", "envFrom", "resources", "resizePolicy",
    "restartPolicy", "volumeMounts", "volumeDevices", "lifecycle", "terminationMessagePath",
    "terminationMessagePolicy", "imagePullPolicy", "securityContext", "stdin", "stdinOnce", "tty")}
CONTAINER |= {"ports": [{k: _OPEN for k in ("name", "containerPort", "hostPort", "hostIP", "protocol")}],
              "env": [{k: _OPEN for k in ("name", "value", "valueFrom")}],
              "livenessProbe": PROBE, "readinessProbe": PROBE, "startupProbe": PROBE}
POD_SPEC = {k: _OPEN for k in (
    "volumes", "restartPolicy", "terminationGracePeriodSeconds", "activeDeadlineSeconds", "dnsPolicy",
    "nodeSelector", "serviceAccountName", "serviceAccount", "automountServiceAccountToken", "nodeName",
    "hostNetwork", "hostPID", "hostIPC", "shareProcessNamespace", "securityContext", "imagePullSecrets",
    "hostname", "subdomain", "affinity", "schedulerName", "tolerations", "hostAliases", "priorityClassName",
    "priority", "dnsConfig", "readinessGates", "runtimeClassName", "enableServiceLinks", "preemptionPolicy",
    "overhead", "topologySpreadConstraints", "setHostnameAsFQDN", "os", "hostUsers", "schedulingGates",
    "resourceClaims", "resources")}
POD_SPEC |= {"containers": [CONTAINER], "initContainers": [CONTAINER], "ephemeralContainers": [CONTAINER]}
TEMPLATE = {"metadata": METADATA, "spec": POD_SPEC}

RULE = {k: _OPEN for k in ("verbs", "apiGroups", "resources", "resourceNames", "nonResourceURLs")}
SUBJECT = {k: _OPEN for k in ("kind", "apiGroup", "name", "namespace")}
ROLE_REF = {k: _OPEN for k in ("apiGroup", "kind", "name")}

SCHEMAS: dict[str, dict] = {
    "Pod": {"spec": POD_SPEC, "status": ANY},
    "Deployment": {"spec": {k: _OPEN for k in ("replicas", "selector", "strategy", "minReadySeconds",
                                                "revisionHistoryLimit", "paused", "progressDeadlineSeconds")}
                   | {"template": TEMPLATE}, "status": ANY},
    "ReplicaSet": {"spec": {k: _OPEN for k in ("replicas", "selector", "minReadySeconds")} | {"template": TEMPLATE},
                   "status": ANY},
    "Service": {"spec": {k: _OPEN for k in (
        "ports", "selector", "clusterIP", "clusterIPs", "type", "externalIPs", "sessionAffinity",
        "loadBalancerIP", "loadBalancerSourceRanges", "externalName", "externalTrafficPolicy",
        "healthCheckNodePort", "publishNotReadyAddresses", "sessionAffinityConfig", "ipFamilies",
        "ipFamilyPolicy", "allocateLoadBalancerNodePorts", "loadBalancerClass", "internalTrafficPolicy",
        "trafficDistribution")}, "status": ANY},
    "ConfigMap": {"data": _OPEN, "binaryData": _OPEN, "immutable": _OPEN},
    "Secret": {"data": _OPEN, "stringData": _OPEN, "type": _OPEN, "immutable": _OPEN},
    "Endpoints": {"subsets": _OPEN},
    "Namespace": {"spec": ANY, "status": ANY},
    "Node": {"spec": ANY, "status": ANY},
    "HorizontalPodAutoscaler": {"spec": ANY, "status": ANY},
    "Event": {k: _OPEN for k in ("involvedObject", "reason", "message", "source", "firstTimestamp",
                                 "lastTimestamp", "count", "type", "eventTime", "series", "action",
                                 "related", "reportingComponent", "reportingInstance")},
    "Scale": {"spec": ANY, "status": ANY},
    "ServiceAccount": {"secrets": _OPEN, "imagePullSecrets": _OPEN, "automountServiceAccountToken": _OPEN},
    "Role": {"rules": [RULE]},
    "ClusterRole": {"rules": [RULE], "aggregationRule": _OPEN},
    "RoleBinding": {"subjects": [SUBJECT], "roleRef": ROLE_REF},
    "ClusterRoleBinding": {"subjects": [SUBJECT], "roleRef": ROLE_REF},
    "TokenRequest": {"spec": {k: _OPEN for k in ("audiences", "expirationSeconds", "boundObjectRef")},
                     "status": ANY},
}


def unknown_fields(kind: str, obj: Any) -> list[str]:
    schema = SCHEMAS.get(kind)
    if schema is None or not isinstance(obj, dict):
        return []
    top = {"apiVersion": _OPEN, "kind": _OPEN, "metadata": METADATA} | schema
    out: list[str] = []
    _walk(top, obj, "", out)
    return out


def _walk(schema: Any, value: Any, path: str, out: list[str]) -> None:
    if schema is None or schema is ANY or schema == {} and schema is ANY:
        return
    if isinstance(schema, list):
        if isinstance(value, list):
            for i, item in enumerate(value):
                _walk(schema[0], item, f"{path}[{i}]", out)
        return
    if not isinstance(value, dict) or not schema:
        return
    for k, v in value.items():
        if k not in schema:
            out.append(f"{path}.{k}" if path else k)
        else:
            _walk(schema[k], v, f"{path}.{k}" if path else k, out)
