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
import json
import logging
import os
import secrets
import threading
from pathlib import Path
from typing import Any, Callable, Protocol

import attrs

from aml_emulator.arm.operations import OperationTracker

log = logging.getLogger(__name__)

#: version of ``resources.json``; a file written by a newer emulator is refused
RESOURCES_FORMAT = 1


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


class ResourceStore:
    """The resources of persistent types, as one JSON file written atomically on each change.

    The file may hold secrets (registry passwords, secure environment variables of container
    groups), so it is mode 0600 in a 0700 directory.
    """

    def __init__(self, directory: Path, loaders: dict[str, Callable[[dict[str, Any]], Any]]) -> None:
        self.path = Path(directory) / "resources.json"
        self.loaders = loaders

    def load(self) -> list[tuple[str, str, str, str, Any]]:
        """``(subscription, group, group location, type, resource)`` of every stored resource."""
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return []
        except ValueError as exc:
            raise ValueError(f"{self.path} is not valid JSON ({exc}); move it aside to start with no "
                             f"ARM resources") from None
        version = data.get("format")
        if not isinstance(version, int) or version > RESOURCES_FORMAT:
            raise ValueError(f"{self.path} has format {version!r}, newer than this emulator reads "
                             f"({RESOURCES_FORMAT}); upgrade aml-emulator or use another state directory")
        found = []
        for entry in data.get("resources", []):
            loader = self.loaders.get(entry["type"].lower())
            if loader is None:  # a type this emulator no longer serves: leave it out, say so
                log.warning("ignoring stored ARM resource of unknown type %s", entry["type"])
                continue
            found.append((entry["subscription"], entry["resource_group"], entry.get("location", "westus"),
                          entry["type"], loader(entry["state"])))
        return found

    def save(self, entries: list[dict[str, Any]]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.path.parent, 0o700)
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        tmp.unlink(missing_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump({"format": RESOURCES_FORMAT, "resources": entries}, handle, indent=1)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self.path)


class ArmBackend:
    """All ARM state of one emulator: subscriptions by id, the issued tokens, the
    long-running operations, and (once :meth:`attach_store` is called) the persistence of
    resources whose type a provider declared with ``ResourceProvider.persist``."""

    def __init__(self, clock: Callable[[], float] | None = None, retry_after: float = 1.0) -> None:
        self.subscriptions: dict[str, Subscription] = {}
        self.tokens = TokenStore()
        self._lock = threading.RLock()
        #: ``() -> kubeconfig YAML`` of the emulated cluster behind every managed cluster
        self.kubeconfig: Callable[[], str] | None = None
        #: long-running operations and the scripts tests set for them
        self.operations = OperationTracker(clock=clock, retry_after=retry_after)
        #: services a resource provider may need, by name (e.g. ``"engine"``), set by the emulator
        self.services: dict[str, Any] = {}
        #: ``(lower-case resource type, resource)`` callbacks run for every resource removed,
        #: one at a time or with its whole group, so providers release what it runs
        self.removal_listeners: list[Callable[[str, Any], None]] = []
        self._store: ResourceStore | None = None

    # -- persistence ----------------------------------------------------------------------

    def attach_store(self, store: ResourceStore) -> None:
        """Load the stored resources, then save every later change to ``store``."""
        for subscription_id, group_name, location, resource_type, resource in store.load():
            group = self.ensure_group(subscription_id, group_name, location)
            group.resources[(resource_type.lower(), resource.name.lower())] = resource
        self._store = store

    def save(self) -> None:
        """Write the persistent resources now (call after changing one in place)."""
        if self._store is None:
            return
        with self._lock:
            entries = [
                {"subscription": sub.subscription_id, "resource_group": group.name, "location": group.location,
                 "type": kind, "state": resource.to_state()}
                for sub in self.subscriptions.values() for group in sub.resource_groups.values()
                for (kind, _name), resource in sorted(group.resources.items())
                if kind in self._store.loaders
            ]
            self._store.save(entries)

    def remove_resource(self, subscription_id: str, resource_group: str, resource_type: str, name: str) -> Any:
        """Remove and return a resource (``None`` if it was not there)."""
        sub = self.subscription(subscription_id)
        group = sub.group(resource_group) if sub else None
        if group is None:
            return None
        with self._lock:
            removed = group.resources.pop((resource_type.lower(), name.lower()), None)
        if removed is not None:
            self._released(resource_type.lower(), removed)
            self.save()
        return removed

    def remove_group(self, subscription_id: str, resource_group: str) -> ResourceGroup | None:
        """Remove a resource group with every resource in it (``None`` if it was not there)."""
        sub = self.subscription(subscription_id)
        if sub is None:
            return None
        with self._lock:
            group = sub.resource_groups.pop(resource_group.lower(), None)
        if group is not None:
            for (kind, _name), resource in sorted(group.resources.items()):
                self._released(kind, resource)
            self.save()
        return group

    def _released(self, resource_type: str, resource: Any) -> None:
        for listener in list(self.removal_listeners):
            listener(resource_type, resource)

    def reset(self) -> None:
        """Forget every resource (except those backed by a running service, like registries),
        operation and script; the tokens are the caller's business."""
        with self._lock:
            for sub in self.subscriptions.values():
                for group in sub.resource_groups.values():
                    for key in [k for k, r in group.resources.items() if hasattr(r, "to_state")]:
                        del group.resources[key]
        self.operations.reset()
        self.save()

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
        self.save()

    def resources_of_type(self, resource_type: str) -> list[tuple[str, ResourceGroup, Any]]:
        """``(subscription id, group, resource)`` of one type in every subscription."""
        return [found for sub_id in list(self.subscriptions)
                for found in self.resources(sub_id, None, resource_type)]

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
