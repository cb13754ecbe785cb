"""Decoding of Kubernetes protobuf request bodies (``application/vnd.kubernetes.protobuf``)
for the kinds kubectl's typed ``create`` helpers send: ConfigMap, Secret, Namespace,
Service, Deployment, autoscaling/v1 HorizontalPodAutoscaler, ServiceAccount, the RBAC kinds
(Role, ClusterRole, RoleBinding, ClusterRoleBinding) and TokenRequest (``kubectl create token``).

The envelope is ``b"k8s\\x00"`` + ``runtime.Unknown{typeMeta, raw}``; ``raw`` is the object
in the field numbering of ``k8s.io/api``'s ``generated.proto``. The tables below name the
fields we understand; an unknown non-empty field is refused (415) rather than dropped.
Responses are always JSON, which every client accepts.
"""

from __future__ import annotations

import base64
import datetime as dt
from typing import Any

from aml_emulator.cluster import exceptions as err

MAGIC = b"k8s\x00"
PROTOBUF = "application/vnd.kubernetes.protobuf"

# field number → (json name, type, sub-schema)
# types: str, bytes, int (omit 0), int0 (keep 0: pointer fields), bool (omit false),
# bool0 (keep false), msg, rep_str, rep_msg, map_ss, map_sb, map_sq, intstr, time, inline, skip
S = dict
LABEL_REQ = S({1: ("key", "str", None), 2: ("operator", "str", None), 3: ("values", "rep_str", None)})
LABEL_SELECTOR = S({1: ("matchLabels", "map_ss", None), 2: ("matchExpressions", "rep_msg", LABEL_REQ)})
OWNER_REF = S({1: ("kind", "str", None), 3: ("name", "str", None), 4: ("uid", "str", None),
               5: ("apiVersion", "str", None), 6: ("controller", "bool0", None), 7: ("blockOwnerDeletion", "bool0", None)})
OBJECT_META = S({1: ("name", "str", None), 2: ("generateName", "str", None), 3: ("namespace", "str", None),
                 4: ("selfLink", "str", None), 5: ("uid", "str", None), 6: ("resourceVersion", "str", None),
                 7: ("generation", "int", None), 8: ("creationTimestamp", "time", None),
                 9: ("deletionTimestamp", "time", None), 10: ("deletionGracePeriodSeconds", "int0", None),
                 11: ("labels", "map_ss", None), 12: ("annotations", "map_ss", None),
                 13: ("ownerReferences", "rep_msg", OWNER_REF), 14: ("finalizers", "rep_str", None),
                 17: ("managedFields", "skip", None)})
LOCAL_REF = S({1: ("name", "str", None)})
KEY_SELECTOR = S({1: ("", "inline", LOCAL_REF), 2: ("key", "str", None), 3: ("optional", "bool0", None)})
FIELD_SELECTOR = S({1: ("apiVersion", "str", None), 2: ("fieldPath", "str", None)})
ENV_SOURCE = S({1: ("fieldRef", "msg", FIELD_SELECTOR), 3: ("configMapKeyRef", "msg", KEY_SELECTOR),
                4: ("secretKeyRef", "msg", KEY_SELECTOR)})
ENV_VAR = S({1: ("name", "str", None), 2: ("value", "str", None), 3: ("valueFrom", "msg", ENV_SOURCE)})
ENV_REF = S({1: ("", "inline", LOCAL_REF), 2: ("optional", "bool0", None)})
ENV_FROM = S({1: ("prefix", "str", None), 2: ("configMapRef", "msg", ENV_REF), 3: ("secretRef", "msg", ENV_REF)})
CONTAINER_PORT = S({1: ("name", "str", None), 2: ("hostPort", "int", None), 3: ("containerPort", "int0", None),
                    4: ("protocol", "str", None), 5: ("hostIP", "str", None)})
RESOURCES = S({1: ("limits", "map_sq", None), 2: ("requests", "map_sq", None)})
HTTP_HEADER = S({1: ("name", "str", None), 2: ("value", "str", None)})
HTTP_GET = S({1: ("path", "str", None), 2: ("port", "intstr", None), 3: ("host", "str", None),
              4: ("scheme", "str", None), 5: ("httpHeaders", "rep_msg", HTTP_HEADER)})
TCP_SOCKET = S({1: ("port", "intstr", None), 2: ("host", "str", None)})
EXEC = S({1: ("command", "rep_str", None)})
PROBE_HANDLER = S({1: ("exec", "msg", EXEC), 2: ("httpGet", "msg", HTTP_GET), 3: ("tcpSocket", "msg", TCP_SOCKET)})
PROBE = S({1: ("", "inline", PROBE_HANDLER), 2: ("initialDelaySeconds", "int", None), 3: ("timeoutSeconds", "int", None),
           4: ("periodSeconds", "int", None), 5: ("successThreshold", "int", None), 6: ("failureThreshold", "int", None),
           7: ("terminationGracePeriodSeconds", "int0", None)})
CONTAINER = S({1: ("name", "str", None), 2: ("image", "str", None), 3: ("command", "rep_str", None),
               4: ("args", "rep_str", None), 5: ("workingDir", "str", None), 6: ("ports", "rep_msg", CONTAINER_PORT),
               7: ("env", "rep_msg", ENV_VAR), 8: ("resources", "msg", RESOURCES), 10: ("livenessProbe", "msg", PROBE),
               11: ("readinessProbe", "msg", PROBE), 13: ("terminationMessagePath", "str", None),
               14: ("imagePullPolicy", "str", None), 16: ("stdin", "bool", None), 17: ("stdinOnce", "bool", None),
               18: ("tty", "bool", None), 19: ("envFrom", "rep_msg", ENV_FROM),
               20: ("terminationMessagePolicy", "str", None), 22: ("startupProbe", "msg", PROBE)})
POD_SPEC = S({2: ("containers", "rep_msg", CONTAINER), 3: ("restartPolicy", "str", None),
              4: ("terminationGracePeriodSeconds", "int0", None), 5: ("activeDeadlineSeconds", "int0", None),
              6: ("dnsPolicy", "str", None), 7: ("nodeSelector", "map_ss", None), 8: ("serviceAccountName", "str", None),
              9: ("serviceAccount", "str", None), 10: ("nodeName", "str", None), 14: ("securityContext", "skip_empty", None),
              15: ("imagePullSecrets", "rep_msg", LOCAL_REF), 16: ("hostname", "str", None), 17: ("subdomain", "str", None),
              19: ("schedulerName", "str", None), 20: ("initContainers", "rep_msg", CONTAINER),
              21: ("automountServiceAccountToken", "bool0", None), 30: ("enableServiceLinks", "bool0", None)})
POD_TEMPLATE = S({1: ("metadata", "msg", OBJECT_META), 2: ("spec", "msg", POD_SPEC)})
ROLLING = S({1: ("maxUnavailable", "intstr", None), 2: ("maxSurge", "intstr", None)})
STRATEGY = S({1: ("type", "str", None), 2: ("rollingUpdate", "msg", ROLLING)})
DEPLOYMENT_SPEC = S({1: ("replicas", "int0", None), 2: ("selector", "msg", LABEL_SELECTOR),
                     3: ("template", "msg", POD_TEMPLATE), 4: ("strategy", "msg", STRATEGY),
                     5: ("minReadySeconds", "int", None), 6: ("revisionHistoryLimit", "int0", None),
                     7: ("paused", "bool", None), 9: ("progressDeadlineSeconds", "int0", None)})
SERVICE_PORT = S({1: ("name", "str", None), 2: ("protocol", "str", None), 3: ("port", "int0", None),
                  4: ("targetPort", "intstr", None), 5: ("nodePort", "int", None), 6: ("appProtocol", "str", None)})
SERVICE_SPEC = S({1: ("ports", "rep_msg", SERVICE_PORT), 2: ("selector", "map_ss", None), 3: ("clusterIP", "str", None),
                  4: ("type", "str", None), 5: ("externalIPs", "rep_str", None), 7: ("sessionAffinity", "str", None),
                  8: ("loadBalancerIP", "str", None), 10: ("externalName", "str", None),
                  11: ("externalTrafficPolicy", "str", None), 13: ("publishNotReadyAddresses", "bool", None),
                  17: ("ipFamilyPolicy", "str", None), 18: ("clusterIPs", "rep_str", None),
                  19: ("ipFamilies", "rep_str", None), 22: ("internalTrafficPolicy", "str", None)})
NAMESPACE_SPEC = S({1: ("finalizers", "rep_str", None)})
XVERSION_REF = S({1: ("kind", "str", None), 2: ("name", "str", None), 3: ("apiVersion", "str", None)})
HPA_V1_SPEC = S({1: ("scaleTargetRef", "msg", XVERSION_REF), 2: ("minReplicas", "int0", None),
                 3: ("maxReplicas", "int0", None), 4: ("targetCPUUtilizationPercentage", "int0", None)})

OBJECT_REF = S({1: ("kind", "str", None), 2: ("namespace", "str", None), 3: ("name", "str", None),
                4: ("uid", "str", None), 5: ("apiVersion", "str", None), 6: ("resourceVersion", "str", None),
                7: ("fieldPath", "str", None)})
POLICY_RULE = S({1: ("verbs", "rep_str", None), 2: ("apiGroups", "rep_str", None), 3: ("resources", "rep_str", None),
                 4: ("resourceNames", "rep_str", None), 5: ("nonResourceURLs", "rep_str", None)})
AGGREGATION_RULE = S({1: ("clusterRoleSelectors", "rep_msg", LABEL_SELECTOR)})
SUBJECT = S({1: ("kind", "str", None), 2: ("apiGroup", "str", None), 3: ("name", "str", None),
             4: ("namespace", "str", None)})
ROLE_REF = S({1: ("apiGroup", "str", None), 2: ("kind", "str", None), 3: ("name", "str", None)})
BOUND_OBJECT_REF = S({1: ("kind", "str", None), 2: ("apiVersion", "str", None), 3: ("name", "str", None),
                      4: ("uid", "str", None)})
TOKEN_REQUEST_SPEC = S({1: ("audiences", "rep_str", None), 3: ("boundObjectRef", "msg", BOUND_OBJECT_REF),
                        4: ("expirationSeconds", "int0", None)})
_BINDING = S({1: ("metadata", "msg", OBJECT_META), 2: ("subjects", "rep_msg", SUBJECT), 3: ("roleRef", "msg", ROLE_REF)})

KINDS: dict[tuple[str, str], dict] = {
    ("v1", "ServiceAccount"): S({1: ("metadata", "msg", OBJECT_META), 2: ("secrets", "rep_msg", OBJECT_REF),
                                 3: ("imagePullSecrets", "rep_msg", LOCAL_REF),
                                 4: ("automountServiceAccountToken", "bool0", None)}),
    ("rbac.authorization.k8s.io/v1", "Role"): S({1: ("metadata", "msg", OBJECT_META),
                                                 2: ("rules", "rep_msg", POLICY_RULE)}),
    ("rbac.authorization.k8s.io/v1", "ClusterRole"): S({1: ("metadata", "msg", OBJECT_META),
                                                        2: ("rules", "rep_msg", POLICY_RULE),
                                                        3: ("aggregationRule", "msg", AGGREGATION_RULE)}),
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): _BINDING,
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"): _BINDING,
    ("authentication.k8s.io/v1", "TokenRequest"): S({1: ("metadata", "msg", OBJECT_META),
                                                     2: ("spec", "msg", TOKEN_REQUEST_SPEC),
                                                     3: ("status", "skip", None)}),
    ("v1", "ConfigMap"): S({1: ("metadata", "msg", OBJECT_META), 2: ("data", "map_ss", None),
                            3: ("binaryData", "map_sb", None), 4: ("immutable", "bool0", None)}),
    ("v1", "Secret"): S({1: ("metadata", "msg", OBJECT_META), 2: ("data", "map_sb", None), 3: ("type", "str", None),
                         4: ("stringData", "map_ss", None), 5: ("immutable", "bool0", None)}),
    ("v1", "Namespace"): S({1: ("metadata", "msg", OBJECT_META), 2: ("spec", "msg", NAMESPACE_SPEC), 3: ("status", "skip", None)}),
    ("v1", "Service"): S({1: ("metadata", "msg", OBJECT_META), 2: ("spec", "msg", SERVICE_SPEC), 3: ("status", "skip", None)}),
    ("apps/v1", "Deployment"): S({1: ("metadata", "msg", OBJECT_META), 2: ("spec", "msg", DEPLOYMENT_SPEC),
                                  3: ("status", "skip", None)}),
    ("autoscaling/v1", "HorizontalPodAutoscaler"): S({1: ("metadata", "msg", OBJECT_META), 2: ("spec", "msg", HPA_V1_SPEC),
                                                      3: ("status", "skip", None)}),
}


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        if i >= len(buf):
            raise err.bad_request("truncated protobuf body")
        b = buf[i]
        i += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, i
        shift += 7
        if shift > 70:
            raise err.bad_request("malformed protobuf varint")


def _fields(buf: bytes):
    i = 0
    while i < len(buf):
        key, i = _varint(buf, i)
        num, wt = key >> 3, key & 7
        if wt == 0:
            val, i = _varint(buf, i)
        elif wt == 2:
            n, i = _varint(buf, i)
            val, i = buf[i:i + n], i + n
        elif wt == 1:
            val, i = buf[i:i + 8], i + 8
        elif wt == 5:
            val, i = buf[i:i + 4], i + 4
        else:
            raise err.bad_request(f"unsupported protobuf wire type {wt}")
        yield num, wt, val


def _signed(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


def _decode(buf: bytes, schema: dict, where: str) -> dict:
    out: dict[str, Any] = {}
    for num, wt, val in _fields(buf):
        spec = schema.get(num)
        if spec is None:
            if wt == 2 and val == b"" or wt == 0 and val == 0:
                continue
            raise err.ApiError(415, "UnsupportedMediaType",
                               f"protobuf field {num} of {where} is not understood by the emulator; send the object as JSON")
        name, kind, sub = spec
        if kind in ("skip",) or kind == "skip_empty" and val == b"":
            continue
        if kind == "skip_empty":
            raise err.ApiError(415, "UnsupportedMediaType",
                               f"protobuf field {where}.{name} is not understood by the emulator; send the object as JSON")
        if kind == "str":
            if val:
                out[name] = val.decode()
        elif kind == "int":
            if val:
                out[name] = _signed(val)
        elif kind == "int0":
            out[name] = _signed(val)
        elif kind == "bool":
            if val:
                out[name] = True
        elif kind == "bool0":
            out[name] = bool(val)
        elif kind == "msg":
            out[name] = _decode(val, sub, f"{where}.{name}")
        elif kind == "inline":
            out.update(_decode(val, sub, where))
        elif kind == "rep_str":
            out.setdefault(name, []).append(val.decode())
        elif kind == "rep_msg":
            out.setdefault(name, []).append(_decode(val, sub, f"{where}.{name}"))
        elif kind in ("map_ss", "map_sb", "map_sq"):
            entry = {n: v for n, _, v in _fields(val)}
            key = entry.get(1, b"").decode()
            raw = entry.get(2, b"")
            if kind == "map_ss":
                value: Any = raw.decode()
            elif kind == "map_sb":
                value = base64.b64encode(raw).decode()
            else:
                value = {n: v for n, _, v in _fields(raw)}.get(1, b"").decode()
            out.setdefault(name, {})[key] = value
        elif kind == "intstr":
            f = {n: v for n, _, v in _fields(val)}
            out[name] = f.get(3, b"").decode() if f.get(1, 0) == 1 else _signed(f.get(2, 0))
        elif kind == "time":
            f = {n: v for n, _, v in _fields(val)}
            if f.get(1):
                out[name] = dt.datetime.fromtimestamp(_signed(f[1]), dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    for k in [k for k, v in out.items() if v == {} and k in ("metadata",)]:
        pass
    return out


def decode(body: bytes) -> dict:
    """The JSON form of a protobuf-encoded object, or a 415 naming what is not supported."""
    if not body.startswith(MAGIC):
        raise err.bad_request("protobuf body without the k8s envelope")
    envelope = {n: v for n, _, v in _fields(body[len(MAGIC):])}
    tm = {n: v for n, _, v in _fields(envelope.get(1, b""))}
    api_version, kind = tm.get(1, b"").decode(), tm.get(2, b"").decode()
    schema = KINDS.get((api_version, kind))
    if schema is None:
        raise err.ApiError(415, "UnsupportedMediaType",
                           f"protobuf bodies for {api_version} {kind} are not supported by the emulator; send JSON "
                           f"(for example `kubectl apply -f`)")
    obj = _decode(envelope.get(2, b""), schema, kind)
    obj["apiVersion"], obj["kind"] = api_version, kind
    return obj
