"""Feeds the in-process front door from the cluster's objects, as a front door pod would.

Routing entries come from Secrets labelled ``aml.frontdoor/service`` and replicas from
Endpoints (:mod:`aml_core.frontdoor.kube` has the conventions), so the routes survive an
emulator restart on the same state and follow pods as they come, go and turn ready. The
store calls :meth:`FrontDoorSync.on_event` synchronously on every write; the front door
applies what it is given on its own serving loop.
"""

from __future__ import annotations

import logging
from typing import Any

from aml_core.frontdoor import ConfigError
from aml_core.frontdoor.kube import backends_from_endpoints, entry_from_secret, upstream_key

from aml_emulator.cluster.models import lookup

log = logging.getLogger(__name__)

SECRETS = lookup("", "v1", "secrets")
ENDPOINTS = lookup("", "v1", "endpoints")


class FrontDoorSync:
    def __init__(self, store: Any, frontdoor: Any) -> None:
        self.store = store
        self.frontdoor = frontdoor
        self.active = False
        # (namespace, secret name) -> the service it carried, to drop the route on delete
        self._entries: dict[tuple[str, str], str] = {}

    def start(self) -> None:
        self.active = True
        self.store.add_listener(self.on_event)
        for secret in self.store.list(SECRETS)[0]:
            self._secret(secret, deleted=False)
        for endpoints in self.store.list(ENDPOINTS)[0]:
            self._endpoints(endpoints, deleted=False)

    def stop(self) -> None:
        self.active = False
        self._entries.clear()

    def on_event(self, event: Any) -> None:
        if not self.active:
            return
        deleted = event.type == "DELETED"
        try:
            if event.key == SECRETS.store_key:
                self._secret(event.obj, deleted)
            elif event.key == ENDPOINTS.store_key:
                self._endpoints(event.obj, deleted)
        except Exception:  # pragma: no cover - a sync bug must not fail the writer
            log.exception("front door sync failed on %s", event.type)

    def _secret(self, secret: dict, deleted: bool) -> None:
        meta = secret.get("metadata") or {}
        key = (meta.get("namespace", ""), meta.get("name", ""))
        parsed = None if deleted else entry_from_secret(secret)
        previous = self._entries.pop(key, None)
        if parsed is None:
            if previous is not None:
                self.frontdoor.remove_service(previous)
            return
        service, payload = parsed
        if previous is not None and previous != service:
            self.frontdoor.remove_service(previous)
        try:
            self.frontdoor.put_service(service, payload)
        except ConfigError as exc:
            log.warning("front door entry %s/%s is invalid and was not applied: %s", *key, exc)
            return
        self._entries[key] = service

    def _endpoints(self, endpoints: dict, deleted: bool) -> None:
        self.frontdoor.set_upstream(upstream_key(endpoints), () if deleted else backends_from_endpoints(endpoints))
