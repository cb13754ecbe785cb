"""The cluster's front door, as a client sees it: where it is, and its admin API.

A cluster with the front door installed says where it is in namespace ``azureml``
(:mod:`aml_core.frontdoor.kube`): :func:`publish` writes it (the front door's pod does, see
:mod:`aml_provider_aks.frontdoor_host`), :func:`locate` reads it. The emulator's cluster
publishes its in-process front door there too, so this module has no emulator branch. Routing entries are written as Secrets (the
source of truth, which a restarted front door reads back); the admin API is only read, to
see an entry applied, and asked for tokens.
"""

from __future__ import annotations

import base64
import time

import attrs
import requests
from aml_core.errors import AuthError, NotFound, ProvisioningFailed
from aml_core.frontdoor import kube, payload_revision

#: seconds to wait for the front door to apply an entry and see a ready replica
APPLY_TIMEOUT = 60.0


@attrs.frozen
class FrontDoorClient:
    url: str
    admin_token: str = attrs.field(repr=False)

    def scoring_uri(self, service: str) -> str:
        return f"{self.url}/api/v1/service/{service}/score"

    def swagger_uri(self, service: str) -> str:
        return f"{self.url}/api/v1/service/{service}/swagger.json"

    def _call(self, method: str, path: str) -> requests.Response:
        try:
            return requests.request(method, f"{self.url}{path}", timeout=30,
                                    headers={"Authorization": f"Bearer {self.admin_token}"})
        except requests.ConnectionError as exc:
            raise ProvisioningFailed(f"The cluster's front door at {self.url} cannot be reached ({exc}). "
                                     f"Check that the cluster (or `aml emulator start`) is running.") from exc

    def describe(self, service: str) -> dict | None:
        resp = self._call("GET", f"/-/services/{service}")
        if resp.status_code == 404:
            return None
        if resp.status_code == 401:
            raise AuthError("The front door refused its admin token; the cluster's Secret azureml/azureml-fe changed. "
                            "Run the operation again.")
        resp.raise_for_status()
        return resp.json()

    def token(self, service: str) -> dict:
        resp = self._call("POST", f"/-/services/{service}/token")
        if resp.status_code == 404:
            raise NotFound(f"The front door has no route for service {service!r}; redeploy it.")
        if resp.status_code == 400:
            raise AuthError(f"Token auth is not enabled for service {service!r}. "
                            f"Update it with token_auth_enabled=True (and auth_enabled=False).")
        resp.raise_for_status()
        return resp.json()

    def wait_applied(self, service: str, payload: dict, *, need_replicas: bool = True,
                     timeout: float = APPLY_TIMEOUT) -> dict:
        """Wait until the front door routes ``service`` with exactly ``payload`` and, with
        ``need_replicas``, every version has a ready replica."""
        revision = payload_revision(payload)
        deadline = time.monotonic() + timeout
        seen: dict | None = None
        while True:
            seen = self.describe(service)
            if seen is not None and seen.get("revision") == revision and (
                    not need_replicas or all(v.get("replicas") for v in seen["versions"].values())):
                return seen
            if time.monotonic() >= deadline:
                break
            time.sleep(0.1)
        if seen is None or seen.get("revision") != revision:
            raise ProvisioningFailed(f"The front door did not pick up service {service!r}'s route within "
                                     f"{timeout:.0f} s; check its logs (namespace azureml).")
        empty = [name for name, v in seen["versions"].items() if not v.get("replicas")]
        raise ProvisioningFailed(f"The front door sees no ready replica of {', '.join(empty)} of service "
                                 f"{service!r}; check service.get_logs().")


def locate(core) -> FrontDoorClient:
    """The front door of the cluster ``core`` (a ``CoreV1Api``) talks to."""
    from kubernetes.client.exceptions import ApiException

    try:
        config = core.read_namespaced_config_map(kube.NAME, kube.NAMESPACE)
        secret = core.read_namespaced_secret(kube.NAME, kube.NAMESPACE)
    except ApiException as exc:
        if exc.status != 404:
            raise
        raise NotFound(
            f"This cluster has no front door: ConfigMap and Secret {kube.NAMESPACE}/{kube.NAME} are missing. "
            f"Clusters from `aml emulator start` have one; on another cluster install it with "
            f"`aml aks install-frontdoor --compute NAME --image IMAGE` (IMAGE: one with aml-provider-aks "
            f"installed).") from exc
    url = (config.data or {}).get(kube.URL_KEY)
    token = (secret.data or {}).get(kube.ADMIN_TOKEN_KEY)
    if not url or not token:
        raise NotFound(f"ConfigMap/Secret {kube.NAMESPACE}/{kube.NAME} lack '{kube.URL_KEY}' or "
                       f"'{kube.ADMIN_TOKEN_KEY}'; reinstall the front door.")
    return FrontDoorClient(url.rstrip("/"), base64.b64decode(token).decode())


def publish(core, url: str, admin_token: str) -> None:
    """Tell clients where the front door is: ConfigMap and Secret ``azureml/azureml-fe``
    (what :func:`locate` reads), created or updated; namespace ``azureml`` is created when
    missing. ``core`` is a ``CoreV1Api``."""
    from kubernetes.client.exceptions import ApiException

    labels = {"app.kubernetes.io/name": kube.NAME, "app.kubernetes.io/managed-by": "aml"}
    token = base64.b64encode(admin_token.encode()).decode()
    objects = (
        (core.read_namespaced_config_map, core.create_namespaced_config_map, core.replace_namespaced_config_map,
         {kube.URL_KEY: url}, None),
        (core.read_namespaced_secret, core.create_namespaced_secret, core.replace_namespaced_secret,
         {kube.ADMIN_TOKEN_KEY: token}, "Opaque"),
    )
    for read, create, replace, data, kind in objects:
        for attempt in range(3):
            try:
                try:
                    current = core.api_client.sanitize_for_serialization(read(kube.NAME, kube.NAMESPACE))
                except ApiException as exc:
                    if exc.status != 404:
                        raise
                    body = {"metadata": {"name": kube.NAME, "namespace": kube.NAMESPACE, "labels": labels},
                            "data": data}
                    if kind:
                        body["type"] = kind
                    try:
                        create(kube.NAMESPACE, body)
                    except ApiException as missing:
                        if missing.status != 404:
                            raise
                        _create_namespace(core, kube.NAMESPACE)
                        create(kube.NAMESPACE, body)
                else:
                    current["data"] = {**(current.get("data") or {}), **data}
                    replace(kube.NAME, kube.NAMESPACE, current)
                break
            except ApiException as exc:
                if exc.status != 409 or attempt == 2:  # 409: written meanwhile; read it again
                    raise


def _create_namespace(core, name: str) -> None:
    from kubernetes.client.exceptions import ApiException

    try:
        core.create_namespace({"metadata": {"name": name}})
    except ApiException as exc:
        if exc.status != 409:
            raise
