"""Routing ARM requests to resource providers, keyed by namespace and resource type.

An ARM resource URL has one grammar for every provider::

    /subscriptions/{sub}[/resourceGroups/{rg}]/providers/{Namespace}/{type}[/{name}[/{childType}/{childName}...]][/{action}]

:func:`parse_path` turns it into an :class:`ArmPath`; a :class:`ResourceProvider` (one per
namespace, e.g. ``Microsoft.ContainerRegistry``) declares its api-version range and its
operations with :meth:`ResourceProvider.operation`. Adding a provider (managed clusters,
container instances, web apps) is one module that builds a ``ResourceProvider`` and is
listed in :data:`aml_emulator.arm.app.PROVIDERS`.
"""

from __future__ import annotations

import re
from typing import Any, Awaitable, Callable

import attrs

from aml_emulator.arm import exceptions

_SEGMENT = re.compile(r"^[A-Za-z0-9._()\-]{1,260}$")
_API_VERSION = re.compile(r"^(\d{4}-\d{2}-\d{2})(-preview)?$")

#: how an operation addresses resources: the whole collection, one resource, or a POST action
COLLECTION = "collection"
ITEM = "item"


@attrs.frozen
class ArmPath:
    """A parsed ARM resource URL (names as sent; comparisons are case-insensitive)."""

    subscription_id: str
    resource_group: str | None
    namespace: str
    #: resource type path, e.g. ``registries`` or ``registries/replications``
    resource_type: str
    #: names along the type path (``[]`` for a top-level collection)
    names: tuple[str, ...]
    #: ``collection``, ``item``, or the POST action's name (e.g. ``listCredentials``)
    kind: str

    @property
    def name(self) -> str | None:
        return self.names[-1] if self.names else None

    def operation_name(self, method: str) -> str:
        """The RBAC-style operation name ARM uses (``Microsoft.X/type/read``, ``.../action``)."""
        if self.kind not in (COLLECTION, ITEM):
            return f"{self.namespace}/{self.resource_type}/{self.kind}/action"
        verb = {"GET": "read", "HEAD": "read", "PUT": "write", "PATCH": "write", "DELETE": "delete"}
        return f"{self.namespace}/{self.resource_type}/{verb.get(method, method.lower())}"


def parse_path(method: str, path: str) -> ArmPath | None:
    """Parse a resource-provider URL, or return ``None`` when ``path`` is not one."""
    parts = [part for part in path.split("/") if part]
    if 3 <= len(parts) <= 4 and parts[0].lower() == "subscriptions" and parts[2].lower() == "resourcegroups":
        # resource groups themselves sit outside the /providers/ grammar
        names = tuple(parts[3:])
        if not all(_SEGMENT.match(part) for part in (parts[1], *names)):
            return None
        return ArmPath(parts[1], None, "Microsoft.Resources", "resourceGroups", names, ITEM if names else COLLECTION)
    if len(parts) < 5 or parts[0].lower() != "subscriptions":
        return None
    subscription_id = parts[1]
    rest = parts[2:]
    resource_group = None
    if rest and rest[0].lower() == "resourcegroups":
        if len(rest) < 2:
            return None
        resource_group = rest[1]
        rest = rest[2:]
    if len(rest) < 3 or rest[0].lower() != "providers":
        return None
    namespace, segments = rest[1], rest[2:]
    if not all(_SEGMENT.match(part) for part in [subscription_id, namespace, *segments]):
        return None
    if resource_group is not None and not _SEGMENT.match(resource_group):
        return None
    if len(segments) % 2 == 0:
        kind = ITEM
        typed = segments
    elif method == "POST" and len(segments) >= 3:
        kind, typed = segments[-1], segments[:-1]
    else:
        kind, typed = COLLECTION, segments + [""]
    types = typed[0::2]
    names = tuple(name for name in typed[1::2] if name)
    return ArmPath(subscription_id, resource_group, namespace, "/".join(types), names, kind)


@attrs.frozen
class ApiVersionRange:
    """The api-versions a provider accepts: every ``YYYY-MM-DD[-preview]`` from ``oldest``
    to ``newest`` inclusive (the Azurite rule: a version newer than ours is refused)."""

    oldest: str
    newest: str

    def accepts(self, version: str) -> bool:
        match = _API_VERSION.match(version)
        return bool(match) and self.oldest <= match.group(1) <= self.newest

    def describe(self) -> list[str]:
        return [f"{self.oldest} through {self.newest} (and their -preview variants)"]


Handler = Callable[["ArmRequest"], Awaitable[Any]]


@attrs.frozen
class ArmResponse:
    """A handler's answer when it is not a plain 200 (long-running operations: 201/202 with
    ``Azure-AsyncOperation``; 204 for deleting what is not there). A handler may also
    return the payload alone, which means 200."""

    payload: Any
    status: int = 200
    headers: dict[str, str] = attrs.field(factory=dict)


@attrs.frozen
class ArmRequest:
    """What a handler receives: the parsed path, method, query and the raw body."""

    method: str
    path: ArmPath
    api_version: str
    query: dict[str, str]
    body: bytes
    backend: Any
    #: ``https://host:port`` the client used, for URLs in answers (``Azure-AsyncOperation``)
    base_url: str = ""

    def json(self) -> Any:
        import json

        if not self.body:
            return None
        try:
            return json.loads(self.body)
        except (ValueError, RecursionError) as exc:  # deep nesting runs the decoder out of stack
            raise exceptions.invalid_request_content(str(exc)) from None


class ResourceProvider:
    """One ARM resource provider namespace and the operations the emulator implements for it."""

    def __init__(self, namespace: str, api_versions: ApiVersionRange) -> None:
        self.namespace = namespace
        self.api_versions = api_versions
        #: (method, type, kind) lower-cased -> (as declared, summary, handler)
        self._operations: dict[tuple[str, str, str], tuple[tuple[str, str, str], str, Handler]] = {}
        #: lower-case resource type -> ``state dict -> resource``, for the types kept on disk
        self.persistent: dict[str, Callable[[dict[str, Any]], Any]] = {}
        #: ``(backend) -> None`` run after the service started (resources already loaded)
        #: and before it stops: what a provider with running parts (containers) needs
        self.on_start: list[Callable[[Any], None]] = []
        self.on_stop: list[Callable[[Any], None]] = []

    def persist(self, resource_type: str, loader: Callable[[dict[str, Any]], Any]) -> None:
        """Keep resources of ``resource_type`` in the service's state directory: each has a
        ``to_state() -> dict`` (JSON-able), and ``loader`` rebuilds one from that dict."""
        self.persistent[resource_type.lower()] = loader

    def operation(self, method: str, resource_type: str, kind: str, *, summary: str) -> Callable[[Handler], Handler]:
        """Register ``handler`` for ``method`` on ``resource_type`` (``kind``: collection,
        item, or an action name). ``summary`` feeds the support matrix."""

        def register(handler: Handler) -> Handler:
            key = (method.upper(), resource_type.lower(), kind.lower())
            if key in self._operations:
                raise ValueError(f"{self.namespace}: {key} registered twice")
            self._operations[key] = ((method.upper(), resource_type, kind), summary, handler)
            return handler

        return register

    def find(self, method: str, path: ArmPath) -> Handler | None:
        entry = self._operations.get((method.upper(), path.resource_type.lower(), path.kind.lower()))
        return entry[2] if entry else None

    def support_matrix(self) -> list[tuple[str, str, str, str]]:
        """``(method, resource type, kind, summary)`` for every implemented operation."""
        return [(*declared, summary) for _key, (declared, summary, _h) in sorted(self._operations.items())]


class ArmRouter:
    """Resource providers by namespace (case-insensitive, as ARM is)."""

    def __init__(self, providers: list[ResourceProvider]) -> None:
        self._providers: dict[str, ResourceProvider] = {}
        for provider in providers:
            key = provider.namespace.lower()
            if key in self._providers:
                raise ValueError(f"resource provider {provider.namespace} registered twice")
            self._providers[key] = provider

    def provider(self, namespace: str) -> ResourceProvider | None:
        return self._providers.get(namespace.lower())

    @property
    def providers(self) -> list[ResourceProvider]:
        return list(self._providers.values())
