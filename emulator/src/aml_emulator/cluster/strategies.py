"""Per-kind defaulting and validation, applied on create and update (the apiserver's
"strategies"). Validation failures are 422 ``Invalid`` with ``details.causes``."""

from __future__ import annotations

import base64
import copy
import ipaddress
import re
from typing import Any

from aml_emulator.cluster import exceptions as err
from aml_emulator.cluster.models import RBAC_GROUP, ResourceType
from aml_emulator.cluster.selectors import label_selector_object

_DNS1123_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


def allocate_cluster_ip(used: set[str]) -> str:
    """The first free fake ClusterIP from 10.96.0.10 on (10.96.0.1 is the apiserver's)."""
    base = ipaddress.IPv4Address("10.96.0.0")
    for n in range(10, 1 << 16):
        ip = str(base + n)
        if ip not in used:
            return ip
    raise err.ApiError(500, "InternalError", "the fake service IP range 10.96.0.0/16 is exhausted")


def _container_defaults(c: dict) -> None:
    c.setdefault("imagePullPolicy", "IfNotPresent" if ":" in (c.get("image") or "") and not (c.get("image") or "").endswith(":latest") else "Always")
    c.setdefault("terminationMessagePath", "/dev/termination-log")
    c.setdefault("terminationMessagePolicy", "File")
    c.setdefault("resources", {})
    for p in c.get("ports") or []:
        p.setdefault("protocol", "TCP")
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        pr = c.get(probe)
        if isinstance(pr, dict):
            pr.setdefault("timeoutSeconds", 1)
            pr.setdefault("periodSeconds", 10)
            pr.setdefault("successThreshold", 1)
            pr.setdefault("failureThreshold", 3)
            if isinstance(pr.get("httpGet"), dict):
                pr["httpGet"].setdefault("path", "/")
                pr["httpGet"].setdefault("scheme", "HTTP")


def default_pod_spec(spec: dict) -> None:
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("securityContext", {})
    for c in (spec.get("containers") or []) + (spec.get("initContainers") or []):
        if isinstance(c, dict):
            _container_defaults(c)


def validate_pod_spec(spec: Any, prefix: str) -> list[tuple[str, str]]:
    causes: list[tuple[str, str]] = []
    if not isinstance(spec, dict):
        return [(prefix, "Required value")]
    containers = spec.get("containers")
    if not containers or not isinstance(containers, list):
        return [(f"{prefix}.containers", "Required value")]
    volumes: set[str] = set()
    for i, v in enumerate(spec.get("volumes") or []):
        name = v.get("name") if isinstance(v, dict) else None
        if not name:
            causes.append((f"{prefix}.volumes[{i}].name", "Required value"))
        elif name in volumes:
            causes.append((f"{prefix}.volumes[{i}].name", f'Duplicate value: "{name}"'))
        elif len(v) < 2:
            causes.append((f"{prefix}.volumes[{i}]", "Required value: must specify a volume type"))
        volumes.add(name)
    seen = set()
    for i, c in enumerate(containers):
        p = f"{prefix}.containers[{i}]"
        if not isinstance(c, dict):
            causes.append((p, "Invalid value: must be an object"))
            continue
        name = c.get("name")
        if not name:
            causes.append((f"{p}.name", "Required value"))
        elif not _DNS1123_LABEL.fullmatch(name):
            causes.append((f"{p}.name", f'Invalid value: "{name}": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or \'-\''))
        elif name in seen:
            causes.append((f"{p}.name", f'Duplicate value: "{name}"'))
        seen.add(name)
        if not c.get("image"):
            causes.append((f"{p}.image", "Required value"))
        for j, m in enumerate(c.get("volumeMounts") or []):
            if not isinstance(m, dict):
                continue
            if m.get("name") not in volumes:
                causes.append((f"{p}.volumeMounts[{j}].name", f'Not found: "{m.get("name", "")}"'))
            if not m.get("mountPath"):
                causes.append((f"{p}.volumeMounts[{j}].mountPath", "Required value"))
    rp = spec.get("restartPolicy")
    if rp not in (None, "Always", "OnFailure", "Never"):
        causes.append((f"{prefix}.restartPolicy", f'Unsupported value: "{rp}": supported values: "Always", "OnFailure", "Never"'))
    return causes


def _mutable_pod_view(spec: Any) -> Any:
    """The pod spec without the fields an update may change (and nodeName, which the
    kubelet sets)."""
    if not isinstance(spec, dict):
        return spec
    view = copy.deepcopy(spec)
    for f in ("activeDeadlineSeconds", "tolerations", "terminationGracePeriodSeconds", "nodeName"):
        view.pop(f, None)
    for key in ("containers", "initContainers"):
        for c in view.get(key) or []:
            if isinstance(c, dict):
                c.pop("image", None)
    return view


def _validate_name(rt: ResourceType, obj: dict) -> list[tuple[str, str]]:
    name = (obj.get("metadata") or {}).get("name") or ""
    if not name:
        return [("metadata.name", "Required value: name or generateName is required")]
    if rt.group == RBAC_GROUP:  # path segment names: "system:controller:x" is valid
        for bad in ("/", "%"):
            if bad in name:
                return [("metadata.name", f'Invalid value: "{name}": may not contain \'{bad}\'')]
        if name in (".", ".."):
            return [("metadata.name", f'Invalid value: "{name}": may not be \'{name}\'')]
        return []
    pattern = _DNS1123_LABEL if rt.plural in ("namespaces", "services") else _DNS1123_SUBDOMAIN
    if len(name) > 253 or not pattern.fullmatch(name):
        return [("metadata.name", f'Invalid value: "{name}": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, \'-\' or \'.\', and must start and end with an alphanumeric character')]
    return []


#: ``IsConfigMapKey``: the keys of a ConfigMap's or Secret's data
_CONFIG_KEY = re.compile(r"[-._a-zA-Z0-9]+")
_CONFIG_KEY_MESSAGE = ("a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name', "
                       " or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')")
#: the total size of a ConfigMap's or Secret's data (``MaxSecretSize``, the same for both)
MAX_DATA_BYTES = 1024 * 1024
_GO_JSON_TYPE = {bool: "bool", int: "number", float: "number", str: "string", dict: "object", list: "array"}


def _decode_string_map(rt: ResourceType, obj: dict, field: str, go_type: str) -> None:
    """What Go's ``json.Unmarshal`` does into a ``map[string]string`` (``[]byte``) field:
    refuse a value of another JSON type with its error, read null as empty."""
    value = obj.get(field)
    if value is None:
        return
    cannot = f'{rt.kind} in version "{rt.version}" cannot be handled as a {rt.kind}: json: cannot unmarshal'
    if not isinstance(value, dict):
        raise err.bad_request(f"{cannot} {_GO_JSON_TYPE.get(type(value), 'value')} into Go struct field "
                              f"{rt.kind}.{field} of type map[string]{go_type}")
    for key, item in value.items():
        if item is None:
            value[key] = ""
        elif not isinstance(item, str):
            raise err.bad_request(f"{cannot} {_GO_JSON_TYPE.get(type(item), 'value')} into Go struct field "
                                  f"{rt.kind}.{field} of type {go_type}")


def _validate_data_keys(obj: dict, fields: tuple[str, ...]) -> list[tuple[str, str]]:
    causes = []
    for field in fields:
        for key in obj.get(field) or {}:
            if not (isinstance(key, str) and len(key) <= 253 and _CONFIG_KEY.fullmatch(key)):
                causes.append((f"{field}[{key}]", f'Invalid value: "{key}": {_CONFIG_KEY_MESSAGE}'))
    return causes


def prepare(rt: ResourceType, obj: dict, old: dict | None, *, used_ips: set[str] | None = None) -> None:
    """Default and validate ``obj`` in place; ``old`` is the stored object on update;
    ``used_ips`` are the ClusterIPs already taken (for a new Service)."""
    kind = rt.kind
    if kind == "ConfigMap":
        _decode_string_map(rt, obj, "data", "string")
        _decode_string_map(rt, obj, "binaryData", "[]uint8")
    elif kind == "Secret":
        _decode_string_map(rt, obj, "data", "[]uint8")
        _decode_string_map(rt, obj, "stringData", "string")
    spec = obj.get("spec")
    if kind == "Pod" and isinstance(spec, dict):
        default_pod_spec(spec)
    elif kind in ("Deployment", "ReplicaSet") and isinstance(spec, dict):
        spec.setdefault("replicas", 1)
        tmpl = spec.setdefault("template", {})
        if isinstance(tmpl.get("spec"), dict):
            default_pod_spec(tmpl["spec"])
        if kind == "Deployment":
            spec.setdefault("revisionHistoryLimit", 10)
            spec.setdefault("progressDeadlineSeconds", 600)
            strat = spec.setdefault("strategy", {})
            strat.setdefault("type", "RollingUpdate")
            if strat["type"] == "RollingUpdate":
                ru = strat.setdefault("rollingUpdate", {})
                ru.setdefault("maxSurge", "25%")
                ru.setdefault("maxUnavailable", "25%")
    elif kind == "Service" and isinstance(spec, dict):
        spec.setdefault("type", "ClusterIP")
        spec.setdefault("sessionAffinity", "None")
        for p in spec.get("ports") or []:
            p.setdefault("protocol", "TCP")
            p.setdefault("targetPort", p.get("port"))
        if old is not None and (old.get("spec") or {}).get("clusterIP"):
            spec["clusterIP"] = old["spec"]["clusterIP"]
            spec["clusterIPs"] = [spec["clusterIP"]]
        elif not spec.get("clusterIP"):
            spec["clusterIP"] = allocate_cluster_ip(used_ips or set())
            spec["clusterIPs"] = [spec["clusterIP"]]
        spec.setdefault("ipFamilies", ["IPv4"])
        spec.setdefault("ipFamilyPolicy", "SingleStack")
        spec.setdefault("internalTrafficPolicy", "Cluster")
    elif kind == "Secret":
        obj.setdefault("type", "Opaque")
        sd = obj.pop("stringData", None)
        if isinstance(sd, dict):
            data = obj.setdefault("data", {})
            for k, v in sd.items():
                data[k] = base64.b64encode(str(v).encode()).decode()
    elif kind == "Namespace":
        obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
        obj.setdefault("status", {}).setdefault("phase", "Active")
        obj["metadata"].setdefault("labels", {})["kubernetes.io/metadata.name"] = obj["metadata"].get("name", "")
    elif kind in ("RoleBinding", "ClusterRoleBinding"):
        if obj.get("roleRef") is None:  # a Go struct, never absent: its zero value
            obj["roleRef"] = {}
        ref = obj.get("roleRef")
        if isinstance(ref, dict) and not ref.get("apiGroup"):
            ref["apiGroup"] = RBAC_GROUP
        for s in obj.get("subjects") or []:
            if isinstance(s, dict) and not s.get("apiGroup") and s.get("kind") in ("User", "Group"):
                s["apiGroup"] = RBAC_GROUP
    elif kind == "HorizontalPodAutoscaler" and isinstance(spec, dict):
        spec.setdefault("minReplicas", 1)
        if not spec.get("metrics"):
            spec["metrics"] = [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}}]

    causes = _validate_name(rt, obj)
    if kind == "Pod":
        causes += validate_pod_spec(spec, "spec")
        if old is not None and _mutable_pod_view(old.get("spec")) != _mutable_pod_view(spec):
            causes.append(("spec", "Forbidden: pod updates may not change fields other than `spec.containers[*].image`,"
                                   "`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` "
                                   "(only additions to existing tolerations),`spec.terminationGracePeriodSeconds`"))
    elif kind in ("Deployment", "ReplicaSet"):
        if not isinstance(spec, dict):
            causes.append(("spec", "Required value"))
        else:
            sel = spec.get("selector")
            if not sel:
                causes.append(("spec.selector", "Required value"))
            tmpl_labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
            if sel and not label_selector_object(sel)(tmpl_labels):
                causes.append(("spec.template.metadata.labels", f"Invalid value: {tmpl_labels!r}: `selector` does not match template `labels`"))
            if old is not None and kind == "Deployment" and (old.get("spec") or {}).get("selector") != sel:
                causes.append(("spec.selector", f"Invalid value: {sel!r}: field is immutable"))
            r = spec.get("replicas")
            if not isinstance(r, int) or r < 0:
                causes.append(("spec.replicas", f"Invalid value: {r!r}: must be greater than or equal to 0"))
            causes += validate_pod_spec((spec.get("template") or {}).get("spec"), "spec.template.spec")
    elif kind == "Service" and isinstance(spec, dict):
        for i, p in enumerate(spec.get("ports") or []):
            if not isinstance(p.get("port"), int) or not 0 < p["port"] < 65536:
                causes.append((f"spec.ports[{i}].port", f"Invalid value: {p.get('port')!r}: must be between 1 and 65535, inclusive"))
        if spec.get("type") not in ("ClusterIP", "NodePort", "LoadBalancer", "ExternalName"):
            causes.append(("spec.type", f'Unsupported value: "{spec.get("type")}"'))
    elif kind == "HorizontalPodAutoscaler":
        if not isinstance(spec, dict) or not spec.get("scaleTargetRef"):
            causes.append(("spec.scaleTargetRef", "Required value"))
        elif not isinstance(spec.get("maxReplicas"), int) or spec["maxReplicas"] < 1:
            causes.append(("spec.maxReplicas", "Invalid value: must be greater than or equal to 1"))
        elif spec.get("minReplicas", 1) > spec["maxReplicas"]:
            causes.append(("spec.minReplicas", "Invalid value: must be less than or equal to maxReplicas"))
    elif kind in ("Role", "ClusterRole"):
        causes += _validate_rules(obj.get("rules"), namespaced=kind == "Role")
    elif kind in ("RoleBinding", "ClusterRoleBinding"):
        causes += _validate_binding(obj, old, namespaced=kind == "RoleBinding")
    elif kind == "Secret":
        causes += _validate_data_keys(obj, ("data",))
        size = 0
        for k, v in (obj.get("data") or {}).items():
            try:
                size += len(base64.b64decode(v, validate=True))
            except Exception:
                causes.append((f"data[{k}]", "Invalid value: illegal base64 data"))
        if size > MAX_DATA_BYTES:
            causes.append(("data", f"Too long: must have at most {MAX_DATA_BYTES} bytes"))
    elif kind == "ConfigMap":
        causes += _validate_data_keys(obj, ("data", "binaryData"))
        both = set(obj.get("data") or {}) & set(obj.get("binaryData") or {})
        causes += [(f"data[{k}]", f'Invalid value: "{k}": duplicate of key present in binaryData') for k in sorted(both)]
        size = sum(len(k) + len(v.encode()) for k, v in (obj.get("data") or {}).items())
        for k, v in (obj.get("binaryData") or {}).items():
            try:
                size += len(k) + len(base64.b64decode(v, validate=True))
            except Exception:
                causes.append((f"binaryData[{k}]", "Invalid value: illegal base64 data"))
        if size > MAX_DATA_BYTES:
            causes.append(("[]", f"Too long: must have at most {MAX_DATA_BYTES} bytes"))
    if causes:
        raise err.invalid(rt.group, rt.kind, (obj.get("metadata") or {}).get("name") or "", causes)


def _supported(values: list[str]) -> str:
    return ", ".join(f'"{v}"' for v in values)


def _validate_rules(rules: Any, *, namespaced: bool) -> list[tuple[str, str]]:
    """rbac/validation.ValidatePolicyRule, for each of ``rules``."""
    if rules is None:
        return []
    if not isinstance(rules, list):
        return [("rules", "Invalid value: must be a list")]
    causes: list[tuple[str, str]] = []
    for i, rule in enumerate(rules):
        p = f"rules[{i}]"
        if not isinstance(rule, dict):
            causes.append((p, "Invalid value: must be an object"))
            continue
        if not rule.get("verbs"):
            causes.append((f"{p}.verbs", "Required value: verbs must contain at least one value"))
        urls = rule.get("nonResourceURLs") or []
        if urls:
            shown = "[]string{" + ", ".join(f'"{u}"' for u in urls) + "}"
            if namespaced:
                causes.append((f"{p}.nonResourceURLs", f"Invalid value: {shown}: namespaced rules cannot apply to non-resource URLs"))
            if rule.get("apiGroups") or rule.get("resources") or rule.get("resourceNames"):
                causes.append((f"{p}.nonResourceURLs", f"Invalid value: {shown}: rules cannot apply to both regular resources and non-resource URLs"))
            continue
        if not rule.get("apiGroups"):
            causes.append((f"{p}.apiGroups", "Required value: resource rules must supply at least one api group"))
        if not rule.get("resources"):
            causes.append((f"{p}.resources", "Required value: resource rules must supply at least one resource"))
    return causes


def _validate_binding(obj: dict, old: dict | None, *, namespaced: bool) -> list[tuple[str, str]]:
    """rbac/validation.ValidateRoleBinding / ValidateClusterRoleBinding (and roleRef's
    immutability on update)."""
    causes: list[tuple[str, str]] = []
    ref = obj.get("roleRef")
    ref = ref if isinstance(ref, dict) else {}
    if ref.get("apiGroup", "") != RBAC_GROUP:
        causes.append(("roleRef.apiGroup", f'Unsupported value: "{ref.get("apiGroup", "")}": supported values: "{RBAC_GROUP}"'))
    kinds = ["Role", "ClusterRole"] if namespaced else ["ClusterRole"]
    if ref.get("kind", "") not in kinds:
        causes.append(("roleRef.kind", f'Unsupported value: "{ref.get("kind", "")}": supported values: {_supported(kinds)}'))
    name = ref.get("name") or ""
    if not name:
        causes.append(("roleRef.name", "Required value"))
    elif "/" in name or "%" in name or name in (".", ".."):
        causes.append(("roleRef.name", f'Invalid value: "{name}": may not contain \'/\' or \'%\''))
    subjects = obj.get("subjects") or []
    if not isinstance(subjects, list):
        subjects = []
        causes.append(("subjects", "Invalid value: must be a list"))
    for i, s in enumerate(subjects):
        p = f"subjects[{i}]"
        if not isinstance(s, dict):
            causes.append((p, "Invalid value: must be an object"))
            continue
        kind, group = s.get("kind", ""), s.get("apiGroup", "")
        if not s.get("name"):
            causes.append((f"{p}.name", "Required value"))
        if kind == "ServiceAccount":
            if s.get("name") and not _DNS1123_SUBDOMAIN.fullmatch(s["name"]):
                causes.append((f"{p}.name", f'Invalid value: "{s["name"]}": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, \'-\' or \'.\', and must start and end with an alphanumeric character'))
            if group:
                causes.append((f"{p}.apiGroup", f'Unsupported value: "{group}": supported values: ""'))
            if not namespaced and not s.get("namespace"):
                causes.append((f"{p}.namespace", "Required value"))
        elif kind in ("User", "Group"):
            if group != RBAC_GROUP:
                causes.append((f"{p}.apiGroup", f'Unsupported value: "{group}": supported values: "{RBAC_GROUP}"'))
        else:
            causes.append((f"{p}.kind", f'Unsupported value: "{kind}": supported values: "ServiceAccount", "User", "Group"'))
    if old is not None and isinstance(old.get("roleRef"), dict) and old["roleRef"] != obj.get("roleRef"):
        causes.append(("roleRef", f"Invalid value: {_go_struct(obj.get('roleRef'))}: cannot change roleRef"))
    return causes


def _go_struct(ref: Any) -> str:
    ref = ref if isinstance(ref, dict) else {}
    return f'rbac.RoleRef{{APIGroup:"{ref.get("apiGroup", "")}", Kind:"{ref.get("kind", "")}", Name:"{ref.get("name", "")}"}}'
