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
"""

from __future__ import annotations

import base64
import json
from typing import Any

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
