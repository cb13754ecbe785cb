"""How the front door meets a Kubernetes cluster: plain-dict conventions shared by its hosts.

The cluster is the source of truth, so a front door that restarts (a pod rescheduled, the
emulator restarted on its state) rebuilds its routes from it:

- a service's routing entry is a Secret (it holds the keys) labelled
  ``aml.frontdoor/service=<name>``, whose ``entry.json`` is the admin API's ``PUT`` payload;
  its versions name an ``upstream``, ``"<namespace>/<kubernetes service>"``;
- each upstream's ready replicas come from that service's Endpoints;
- clients find the front door in namespace ``azureml``: ConfigMap ``azureml-fe`` (key ``url``)
  and Secret ``azureml-fe`` (key ``admin-token``).

Objects here are the Kubernetes JSON shapes (dicts), as the emulator stores them and as the
official client's ``sanitize_for_serialization`` returns them; no client library is needed.
:class:`RouteSync` turns those objects into front door routes; every host (the emulator's
store listener, the front door's pod watching a real cluster) feeds it the same way.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
from collections.abc import Iterable
from typing import Any

from aml_core.frontdoor.config import ConfigError

log = logging.getLogger(__name__)

ENTRY_LABEL = "aml.frontdoor/service"
ENTRY_KEY = "entry.json"
NAMESPACE = "azureml"
NAME = "azureml-fe"
URL_KEY = "url"
ADMIN_TOKEN_KEY = "admin-token"
#: the port name scoring containers expose; Endpoints ports are matched by it
PORT_NAME = "http"


def entry_secret(service: str, namespace: str, payload: dict) -> dict:
    """The Secret that carries ``service``'s routing entry."""
    data = base64.b64encode(json.dumps(payload, sort_keys=True).encode()).decode()
    return {"metadata": {"name": entry_secret_name(service), "namespace": namespace,
                         "labels": {ENTRY_LABEL: service, "app.kubernetes.io/managed-by": "aml"}},
            "type": "Opaque", "data": {ENTRY_KEY: data}}


def entry_secret_name(service: str) -> str:
    return f"{service}-frontdoor"


def entry_from_secret(secret: dict) -> tuple[str, Any] | None:
    """``(service name, payload)`` from an entry Secret; ``None`` for any other Secret or a
    Secret whose payload cannot be read (the front door then has no route for it)."""
    meta = secret.get("metadata") or {}
    service = (meta.get("labels") or {}).get(ENTRY_LABEL)
    raw = (secret.get("data") or {}).get(ENTRY_KEY)
    if not service or not raw:
        return None
    try:
        return service, json.loads(base64.b64decode(raw))
    except ValueError:
        return None


def upstream_key(endpoints: dict) -> str:
    meta = endpoints.get("metadata") or {}
    return f"{meta.get('namespace', 'default')}/{meta.get('name', '')}"


def backends_from_endpoints(endpoints: dict, port_name: str = PORT_NAME) -> tuple[str, ...]:
    """The base URLs of the ready addresses (``notReadyAddresses`` are left out)."""
    urls: list[str] = []
    for subset in endpoints.get("subsets") or []:
        ports = subset.get("ports") or []
        port = next((p for p in ports if p.get("name") == port_name), ports[0] if len(ports) == 1 else None)
        if port is None:
            continue
        for address in subset.get("addresses") or []:
            host = address.get("ip") or address.get("hostname")
            if host:
                host = f"[{host}]" if ":" in host else host
                urls.append(f"http://{host}:{port['port']}")
    return tuple(sorted(dict.fromkeys(urls)))


def _key(obj: dict) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return meta.get("namespace", ""), meta.get("name", "")


class RouteSync:
    """Keeps a front door's routes equal to the cluster's routing objects.

    Client-agnostic: a host hands it Secrets and Endpoints as plain dicts, one at a time
    (:meth:`on_secret`, :meth:`on_endpoints`, e.g. from watch events) or all at once after a
    (re)list (:meth:`resync`, which also drops what is no longer there). ``frontdoor`` needs
    ``put_service``, ``remove_service`` and ``set_upstream`` (:class:`~aml_core.frontdoor.FrontDoor`).

    Routes are a function of the objects present, so a front door that restarts ends up
    where it was: an entry whose payload is unreadable or invalid has no route (logged),
    including when it replaces a valid one. Only routes this object put are ever removed;
    services put directly over the admin API are left alone. Safe to call from several
    threads (calls are serialised).
    """

    def __init__(self, frontdoor: Any) -> None:
        self.frontdoor = frontdoor
        self._lock = threading.RLock()
        # (namespace, secret name) -> the service it carries, to drop the route on delete
        self._entries: dict[tuple[str, str], str] = {}
        # upstreams this object set, to empty them when their Endpoints go away
        self._upstreams: set[str] = set()

    @property
    def services(self) -> dict[tuple[str, str], str]:
        """``{(namespace, secret name): service}`` for the entries currently applied."""
        with self._lock:
            return dict(self._entries)

    def on_secret(self, secret: dict, deleted: bool = False) -> None:
        """A Secret was added, changed (``deleted=False``) or deleted. Secrets that carry no
        routing entry are ignored, unless they carried one before (then its route goes)."""
        key = _key(secret)
        with self._lock:
            previous = self._entries.pop(key, None)
            service, payload = None, None
            if not deleted:
                labelled = ((secret.get("metadata") or {}).get("labels") or {}).get(ENTRY_LABEL)
                parsed = entry_from_secret(secret)
                if parsed is not None:
                    service, payload = parsed
                elif labelled:
                    log.warning("front door entry %s/%s (service %r) has no readable %r; it is not routed",
                                *key, labelled, ENTRY_KEY)
            if previous is not None and previous != service:
                self.frontdoor.remove_service(previous)
            if service is None:
                return
            try:
                self.frontdoor.put_service(service, payload)
            except ConfigError as exc:
                log.warning("front door entry %s/%s (service %r) is invalid and is not routed: %s",
                            *key, service, exc)
                if previous == service:
                    self.frontdoor.remove_service(service)
                return
            self._entries[key] = service

    def on_endpoints(self, endpoints: dict, deleted: bool = False) -> None:
        """Endpoints were added, changed or deleted: their ready addresses become the
        replicas of upstream ``"<namespace>/<name>"``."""
        upstream = upstream_key(endpoints)
        backends = () if deleted else backends_from_endpoints(endpoints)
        with self._lock:
            self.frontdoor.set_upstream(upstream, backends)
            if backends:
                self._upstreams.add(upstream)
            else:
                self._upstreams.discard(upstream)

    def resync_secrets(self, secrets: Iterable[dict]) -> None:
        """Apply a full list of Secrets: entries not in it lose their route."""
        secrets = list(secrets)
        present = {_key(s) for s in secrets}
        with self._lock:
            for key, service in list(self._entries.items()):
                if key not in present:
                    del self._entries[key]
                    self.frontdoor.remove_service(service)
            for secret in secrets:
                self.on_secret(secret)

    def resync_endpoints(self, endpoints: Iterable[dict]) -> None:
        """Apply a full list of Endpoints: upstreams not in it have no replica any more."""
        endpoints = list(endpoints)
        present = {upstream_key(e) for e in endpoints}
        with self._lock:
            for upstream in list(self._upstreams - present):
                self._upstreams.discard(upstream)
                self.frontdoor.set_upstream(upstream, ())
            for item in endpoints:
                self.on_endpoints(item)

    def resync(self, secrets: Iterable[dict], endpoints: Iterable[dict]) -> None:
        """:meth:`resync_endpoints` then :meth:`resync_secrets`, so entries find their replicas."""
        with self._lock:
            self.resync_endpoints(endpoints)
            self.resync_secrets(secrets)

    def forget(self) -> None:
        """Drop the bookkeeping (the front door itself is left as it is), e.g. when its host stops."""
        with self._lock:
            self._entries.clear()
            self._upstreams.clear()
