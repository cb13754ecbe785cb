"""RBAC authorization (``rbac.authorization.k8s.io/v1``), evaluated as the real authorizer
does: a request is allowed when a rule of a Role or ClusterRole bound to the user (or one of
its groups, or its service account) matches the request's verb, API group, resource (with
subresource), name and namespace. ClusterRoleBindings grant everywhere; RoleBindings grant
in their own namespace, whether they reference a Role of that namespace or a ClusterRole.
There are no deny rules. ``system:masters`` is allowed everything without RBAC.

Denials are the apiserver's ``403 Forbidden`` with its message, e.g.
``secrets is forbidden: User "system:serviceaccount:ns:sa" cannot list resource "secrets"
in API group "" at the cluster scope``.
"""

from __future__ import annotations

from collections.abc import Iterable

import attrs

from aml_emulator.cluster import exceptions as err
from aml_emulator.cluster.auth import UserInfo, split_service_account
from aml_emulator.cluster.models import lookup

ROLES = lookup("rbac.authorization.k8s.io", "v1", "roles")
ROLEBINDINGS = lookup("rbac.authorization.k8s.io", "v1", "rolebindings")
CLUSTERROLES = lookup("rbac.authorization.k8s.io", "v1", "clusterroles")
CLUSTERROLEBINDINGS = lookup("rbac.authorization.k8s.io", "v1", "clusterrolebindings")

#: non-resource paths every authenticated identity may GET (system:discovery,
#: system:public-info-viewer)
DISCOVERY_PREFIXES = ("/api", "/apis", "/openapi", "/version", "/healthz", "/livez", "/readyz")


@attrs.frozen
class Attributes:
    """What a request asks to do (the apiserver's ``authorizer.Attributes``)."""

    verb: str
    resource: str = ""
    api_group: str = ""
    subresource: str = ""
    name: str = ""
    namespace: str = ""
    path: str = ""

    @property
    def resource_request(self) -> bool:
        return bool(self.resource)


# ------------------------------------------------------------------ rule matching
def _has(values: Iterable[str] | None, wanted: str) -> bool:
    values = values or []
    return "*" in values or wanted in values


def resource_matches(rule_resources: Iterable[str] | None, resource: str, subresource: str) -> bool:
    combined = f"{resource}/{subresource}" if subresource else resource
    for r in rule_resources or []:
        if r == "*" or r == combined:
            return True
        if subresource and r == f"*/{subresource}":
            return True
    return False


def non_resource_url_matches(urls: Iterable[str] | None, path: str) -> bool:
    for u in urls or []:
        if u == "*" or u == path or (u.endswith("*") and path.startswith(u[:-1])):
            return True
    return False


def rule_allows(rule: dict, a: Attributes) -> bool:
    """``rbac.RuleAllows``: one PolicyRule against one request."""
    if not _has(rule.get("verbs"), a.verb):
        return False
    if not a.resource_request:
        return non_resource_url_matches(rule.get("nonResourceURLs"), a.path)
    if not _has(rule.get("apiGroups"), a.api_group):
        return False
    if not resource_matches(rule.get("resources"), a.resource, a.subresource):
        return False
    names = rule.get("resourceNames") or []
    return not names or a.name in names


def subject_applies(subject: dict, user: UserInfo, binding_namespace: str) -> bool:
    kind, name = subject.get("kind"), subject.get("name", "")
    if kind == "User":
        return user.name == name
    if kind == "Group":
        return name in user.groups
    if kind == "ServiceAccount":
        sa = split_service_account(user.name)
        return sa is not None and sa == (subject.get("namespace") or binding_namespace, name)
    return False


# ------------------------------------------------------------------ the authorizer
class Authorizer:
    """RBAC over the objects in a :class:`~aml_emulator.cluster.store.Store`."""

    def __init__(self, store) -> None:
        self.store = store

    def _rules(self, kind_rt, namespace: str, name: str, errors: list[str]) -> list[dict]:
        obj = self.store.try_get(kind_rt, namespace, name)
        if obj is None:
            what = "clusterrole" if kind_rt is CLUSTERROLES else "role"
            errors.append(f'{what}.rbac.authorization.k8s.io "{name}" not found')
            return []
        return [r for r in obj.get("rules") or [] if isinstance(r, dict)]

    def authorize(self, user: UserInfo, a: Attributes) -> tuple[bool, str]:
        """``(allowed, reason)``; the reason names bindings whose role is missing."""
        if user.privileged:
            return True, ""
        if not a.resource_request and a.verb == "get" and any(
                a.path == p or a.path.startswith(p + "/") for p in DISCOVERY_PREFIXES):
            return True, ""
        errors: list[str] = []
        for b in self.store.list(CLUSTERROLEBINDINGS)[0]:
            if not any(subject_applies(s, user, "") for s in b.get("subjects") or [] if isinstance(s, dict)):
                continue
            ref = b.get("roleRef") or {}
            if ref.get("kind") != "ClusterRole":
                continue
            if any(rule_allows(r, a) for r in self._rules(CLUSTERROLES, "", ref.get("name", ""), errors)):
                return True, ""
        if a.namespace:
            for b in self.store.list(ROLEBINDINGS, a.namespace)[0]:
                ns = b["metadata"].get("namespace", "")
                if not any(subject_applies(s, user, ns) for s in b.get("subjects") or [] if isinstance(s, dict)):
                    continue
                ref = b.get("roleRef") or {}
                if ref.get("kind") == "ClusterRole":
                    rules = self._rules(CLUSTERROLES, "", ref.get("name", ""), errors)
                elif ref.get("kind") == "Role":
                    rules = self._rules(ROLES, ns, ref.get("name", ""), errors)
                else:
                    continue
                if any(rule_allows(r, a) for r in rules):
                    return True, ""
        return False, ("RBAC: " + ", ".join(errors) if len(errors) == 1 else
                       "RBAC: [" + ", ".join(errors) + "]") if errors else ""

    def check(self, user: UserInfo, a: Attributes) -> None:
        """Raise the apiserver's 403 unless ``user`` may do ``a``."""
        allowed, reason = self.authorize(user, a)
        if not allowed:
            raise forbidden(user, a, reason)


def forbidden_message(user: UserInfo, a: Attributes) -> str:
    if not a.resource_request:
        return f'User "{user.name}" cannot {a.verb} path "{a.path}"'
    resource = f"{a.resource}/{a.subresource}" if a.subresource else a.resource
    where = f'in the namespace "{a.namespace}"' if a.namespace else "at the cluster scope"
    return f'User "{user.name}" cannot {a.verb} resource "{resource}" in API group "{a.api_group}" {where}'


def forbidden(user: UserInfo, a: Attributes, reason: str = "") -> err.ApiError:
    msg = forbidden_message(user, a)
    if reason:
        msg = f"{msg}: {reason}"
    return err.forbidden(a.api_group, a.resource, a.name, msg)
