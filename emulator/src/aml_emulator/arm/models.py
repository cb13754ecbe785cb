"""The state behind the emulated Azure Resource Manager.

Subscriptions are created lazily the first time something is put in them (moto's
``BackendDict`` pattern); resource groups hold resources by ``(type, name)``, both compared
case-insensitively as ARM does. A registry resource does not copy the registry's data: it
points at the running registry service, so credentials read or rotated through ARM are the
ones the registry checks.
"""

from __future__ import annotations

import datetime as _dt
import hmac
import secrets
import threading
from typing import Any, Callable, Protocol

import attrs


class RegistryCredentials(Protocol):
    username: str
    passwords: dict[str, str]

    def regenerate(self, name: str) -> Any: ...


class RegistryBackend(Protocol):
    """What the ARM layer needs from :class:`aml_emulator.registry.RegistryService`."""

    login_server: str
    credentials: RegistryCredentials


@attrs.define
class RegistryResource:
    """A ``Microsoft.ContainerRegistry/registries`` resource backed by a registry service."""

    name: str
    service: RegistryBackend = attrs.field(repr=False)
    location: str = "westus"
    sku: str = "Basic"
    tags: dict[str, str] = attrs.field(factory=dict)
    created: _dt.datetime = attrs.field(factory=lambda: _dt.datetime.now(_dt.timezone.utc))


@attrs.define
class ResourceGroup:
    name: str
    location: str = "westus"
    tags: dict[str, str] = attrs.field(factory=dict)
    #: resources by (lower-case type, lower-case name)
    resources: dict[tuple[str, str], Any] = attrs.field(factory=dict)


@attrs.define
class Subscription:
    subscription_id: str
    resource_groups: dict[str, ResourceGroup] = attrs.field(factory=dict)

    def group(self, name: str) -> ResourceGroup | None:
        return self.resource_groups.get(name.lower())


class TokenStore:
    """Bearer tokens the emulator issued. Every comparison is constant-time."""

    def __init__(self) -> None:
        self._tokens: list[str] = []
        self._lock = threading.Lock()

    def issue(self, token: str | None = None) -> str:
        """Add ``token`` (or a fresh random one) to the accepted tokens and return it."""
        token = token or secrets.token_urlsafe(32)
        with self._lock:
            self._tokens.append(token)
        return token

    def accepts(self, presented: str) -> bool:
        with self._lock:
            tokens = list(self._tokens)
        presented_bytes = presented.encode("utf-8", "surrogateescape")
        matched = False
        for token in tokens:  # no early exit: the time taken does not depend on which matched
            matched |= hmac.compare_digest(presented_bytes, token.encode("utf-8"))
        return matched

    def revoke_all_but(self, keep: str | None) -> None:
        with self._lock:
            self._tokens = [t for t in self._tokens if keep is not None and hmac.compare_digest(t, keep)]

    def __repr__(self) -> str:
        return f"TokenStore({len(self._tokens)} token(s))"


class ArmBackend:
    """All ARM state of one emulator: subscriptions by id, and the issued tokens."""

    def __init__(self) -> None:
        self.subscriptions: dict[str, Subscription] = {}
        self.tokens = TokenStore()
        self._lock = threading.Lock()
        #: ``() -> kubeconfig YAML`` of the emulated cluster behind every managed cluster
        self.kubeconfig: Callable[[], str] | None = None
        #: long-running operations by id (``Azure-AsyncOperation`` status documents)
        self.operations: dict[str, Any] = {}

    def subscription(self, subscription_id: str) -> Subscription | None:
        return self.subscriptions.get(subscription_id.lower())

    def ensure_group(self, subscription_id: str, resource_group: str, location: str = "westus") -> ResourceGroup:
        with self._lock:
            sub = self.subscriptions.setdefault(subscription_id.lower(), Subscription(subscription_id))
            return sub.resource_groups.setdefault(resource_group.lower(), ResourceGroup(resource_group, location))

    def add_resource(self, subscription_id: str, resource_group: str, resource_type: str, resource: Any) -> None:
        group = self.ensure_group(subscription_id, resource_group)
        with self._lock:
            group.resources[(resource_type.lower(), resource.name.lower())] = resource

    def resources(self, subscription_id: str, resource_group: str | None, resource_type: str) -> list[tuple[str, ResourceGroup, Any]]:
        """``(subscription id, group, resource)`` of one type, in a group or a whole subscription."""
        sub = self.subscription(subscription_id)
        if sub is None:
            return []
        groups = [sub.group(resource_group)] if resource_group else list(sub.resource_groups.values())
        found = []
        for group in groups:
            if group is None:
                continue
            for (kind, _name), resource in sorted(group.resources.items()):
                if kind == resource_type.lower():
                    found.append((sub.subscription_id, group, resource))
        return found
