"""Feeds the in-process front door from the cluster's objects, as a front door pod would.

Routing entries come from Secrets labelled ``aml.frontdoor/service`` and replicas from
Endpoints; what they mean for the routes is :class:`aml_core.frontdoor.kube.RouteSync`'s
business, shared with the front door's pod on a real cluster. This is only the adapter to the
store: an initial list, then the store's listener, which the store calls synchronously on
every write (the front door applies what it is given on its own serving loop). So the routes
survive an emulator restart on the same state and follow pods as they come, go and turn ready.
"""

from __future__ import annotations

import logging
from typing import Any

from aml_core.frontdoor.kube import RouteSync

from aml_emulator.cluster.models import lookup

log = logging.getLogger(__name__)

SECRETS = lookup("", "v1", "secrets")
ENDPOINTS = lookup("", "v1", "endpoints")


class FrontDoorSync:
    def __init__(self, store: Any, frontdoor: Any) -> None:
        self.store = store
        self.frontdoor = frontdoor
        self.routes = RouteSync(frontdoor)
        self.active = False

    def start(self) -> None:
        self.active = True
        self.store.add_listener(self.on_event)
        self.routes.resync(self.store.list(SECRETS)[0], self.store.list(ENDPOINTS)[0])

    def stop(self) -> None:
        self.active = False
        self.routes.forget()

    def on_event(self, event: Any) -> None:
        if not self.active:
            return
        deleted = event.type == "DELETED"
        try:
            if event.key == SECRETS.store_key:
                self.routes.on_secret(event.obj, deleted)
            elif event.key == ENDPOINTS.store_key:
                self.routes.on_endpoints(event.obj, deleted)
        except Exception:  # pragma: no cover - a sync bug must not fail the writer
            log.exception("front door sync failed on %s", event.type)
