"""Install the front door on a Kubernetes cluster (``aml aks install-frontdoor``).

The emulator's cluster runs its front door in-process; any cluster can also get it as pods
running :mod:`aml_provider_aks.frontdoor_host`, which routes by the cluster's Secrets and
Endpoints. :func:`install_frontdoor` creates, idempotently (a second run updates in place and
keeps the admin token, so clients keep working):

- namespace ``<namespace>`` (default ``azureml``) and namespace ``azureml`` (where clients look);
- ServiceAccount ``azureml-fe``; ClusterRole + ClusterRoleBinding ``azureml-fe`` (get, list,
  watch on secrets and endpoints, in every namespace: the routing entries and replicas);
  Role + RoleBinding ``azureml-fe`` in ``azureml`` (get, create, update on configmaps and
  secrets, to publish where the front door is);
- Secret ``azureml-fe`` with the admin token (key ``admin-token``), mounted read-only into
  the pod as a file;
- Service ``azureml-fe``, type LoadBalancer, port 80 to the pod's 8080; the installer waits
  for the load balancer's address;
- Deployment ``azureml-fe`` running the host with::

      --admin-token-file /etc/azureml-fe/admin-token --publish http://<address> \\
      --service-account-dir /var/run/secrets/kubernetes.io/serviceaccount

  and waits for it to be available; then publishes ConfigMap/Secret ``azureml/azureml-fe``
  itself as well, so :func:`aml_provider_aks.frontdoor.locate` finds the front door.

**The image.** By default our own packaging builds it
(:mod:`aml_provider_aks.frontdoor_image`) and pushes it to ``registry`` (the workspace's),
and the Deployment pulls it with a ``kubernetes.io/dockerconfigjson`` Secret
``azureml-fe-pull``; its entrypoint starts the host, so the Deployment gives only ``args``.
For a cluster that runs real containers, give ``base=`` (an image with ``python3`` and the
requirements, e.g. from ``scripts/build-base-image.sh``). Alternatively ``image=`` names an
image you built: ``python`` on its ``PATH`` and ``aml-provider-aks`` installed; the
Deployment then runs ``python -m aml_provider_aks.frontdoor_host`` as its ``command``.

With ``replicas`` > 1 every replica reads the same entries, keys and token signing keys,
so a key or a token works through any of them.
"""

from __future__ import annotations

import base64
import secrets
import time
from collections.abc import Callable
from typing import Any

from aml_core.errors import InvalidConfig, ProvisioningFailed
from aml_core.frontdoor import kube
from aml_core.images import ContainerRegistry
from aml_core.oci import Image

from aml_provider_aks import frontdoor_image
from aml_provider_aks.deploy import pull_secret
from aml_provider_aks.frontdoor import FrontDoorClient, publish
from aml_provider_aks.frontdoor_host import SERVICE_ACCOUNT_DIR

NAME = kube.NAME
CONTAINER_PORT = frontdoor_image.PORT
SERVICE_PORT = 80
TOKEN_DIR = "/etc/azureml-fe"
PULL_SECRET = f"{NAME}-pull"
LABELS = {"app": NAME, "app.kubernetes.io/name": NAME, "app.kubernetes.io/managed-by": "aml"}
#: seconds to wait for the load balancer's address, and for the Deployment to be available
DEFAULT_TIMEOUT = 600.0

Progress = Callable[[str], None]


# ------------------------------------------------------------------ the objects
def rbac_objects(namespace: str) -> list[tuple[str, dict]]:
    """``(kind, body)`` of the ServiceAccount and its roles and bindings."""
    subject = [{"kind": "ServiceAccount", "name": NAME, "namespace": namespace}]
    meta = {"name": NAME, "labels": LABELS}
    return [
        ("ServiceAccount", {"metadata": {**meta, "namespace": namespace}}),
        ("ClusterRole", {"metadata": meta, "rules": [
            {"apiGroups": [""], "resources": ["secrets", "endpoints"], "verbs": ["get", "list", "watch"]}]}),
        ("ClusterRoleBinding", {"metadata": meta, "subjects": subject, "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": NAME}}),
        ("Role", {"metadata": {**meta, "namespace": kube.NAMESPACE}, "rules": [
            {"apiGroups": [""], "resources": ["configmaps", "secrets"], "verbs": ["get", "create", "update"]}]}),
        ("RoleBinding", {"metadata": {**meta, "namespace": kube.NAMESPACE}, "subjects": subject, "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": NAME}}),
    ]


def token_secret(namespace: str, admin_token: str) -> dict:
    return {"metadata": {"name": NAME, "namespace": namespace, "labels": LABELS}, "type": "Opaque",
            "data": {kube.ADMIN_TOKEN_KEY: base64.b64encode(admin_token.encode()).decode()}}


def service_object(namespace: str) -> dict:
    return {"metadata": {"name": NAME, "namespace": namespace, "labels": LABELS},
            "spec": {"type": "LoadBalancer", "selector": {"app": NAME},
                     "ports": [{"name": "http", "port": SERVICE_PORT, "targetPort": CONTAINER_PORT,
                                "protocol": "TCP"}]}}


def deployment_object(image: str, namespace: str, replicas: int, url: str, *, own_image: bool = True) -> dict:
    """The Deployment; ``own_image``: ``image`` is :mod:`~aml_provider_aks.frontdoor_image`'s
    (its entrypoint starts the host, and it is pulled with Secret ``azureml-fe-pull``)."""
    args = ["--admin-token-file", f"{TOKEN_DIR}/{kube.ADMIN_TOKEN_KEY}", "--publish", url,
            "--service-account-dir", SERVICE_ACCOUNT_DIR]
    container = {
        "name": "frontdoor", "image": image,
        **({"args": args} if own_image else {
            "command": ["python", "-m", "aml_provider_aks.frontdoor_host"],
            "args": ["--host", "0.0.0.0", "--port", str(CONTAINER_PORT), *args]}),
        "ports": [{"name": "http", "containerPort": CONTAINER_PORT}],
        "volumeMounts": [{"name": "admin-token", "mountPath": TOKEN_DIR, "readOnly": True}],
        "readinessProbe": {"httpGet": {"path": "/", "port": CONTAINER_PORT}, "periodSeconds": 2},
        "livenessProbe": {"httpGet": {"path": "/", "port": CONTAINER_PORT}, "periodSeconds": 10,
                          "initialDelaySeconds": 10, "failureThreshold": 3},
        "resources": {"requests": {"cpu": "250m", "memory": "256Mi"}},
        "securityContext": {"allowPrivilegeEscalation": False},
    }
    return {"metadata": {"name": NAME, "namespace": namespace, "labels": LABELS},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": NAME}},
                     "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
                     "template": {"metadata": {"labels": LABELS}, "spec": {
                         "serviceAccountName": NAME, "terminationGracePeriodSeconds": 30,
                         **({"imagePullSecrets": [{"name": PULL_SECRET}]} if own_image else {}),
                         "containers": [container],
                         "volumes": [{"name": "admin-token", "secret": {
                             "secretName": NAME, "defaultMode": 0o444,
                             "items": [{"key": kube.ADMIN_TOKEN_KEY, "path": kube.ADMIN_TOKEN_KEY}]}}]}}}}


# ------------------------------------------------------------------ installing
class _Apis:
    """The typed API groups the installer uses (``core``, ``apps``, ``rbac``)."""

    def __init__(self, kubeconfig: str) -> None:
        from kubernetes import client, config

        self.api = config.new_client_from_config(config_file=kubeconfig)
        self.core = client.CoreV1Api(self.api)
        self.apps = client.AppsV1Api(self.api)
        self.rbac = client.RbacAuthorizationV1Api(self.api)

    def plain(self, obj: Any) -> dict:
        return self.api.sanitize_for_serialization(obj)

    def close(self) -> None:
        self.api.close()


def install_frontdoor(kubeconfig: str, image: str | None = None, *, registry: ContainerRegistry | None = None,
                      base: Image | None = None, namespace: str = kube.NAMESPACE, replicas: int = 1,
                      timeout: float = DEFAULT_TIMEOUT, progress: Progress | None = None) -> FrontDoorClient:
    """Install (or update) the front door on the cluster of ``kubeconfig``; see the module
    docstring for what is created. Returns the published front door (URL and admin token).

    Give ``registry`` (and for real containers ``base``) to run our own image, built and
    pushed here, or ``image`` to run one of yours.

    Raises :class:`InvalidConfig` for bad arguments and :class:`ProvisioningFailed` naming the
    object or the wait that failed, with what to check.
    """
    if image is not None and (not image or not isinstance(image, str)):
        raise InvalidConfig("image must name an image with aml-provider-aks installed, or be left out.")
    if image is None and registry is None:
        raise InvalidConfig("install_frontdoor needs registry=<where to push the front door's image> "
                            "(the workspace's: aml_core.images.workspace_registry(ws)), or image=<your own>.")
    if image is not None and base is not None:
        raise InvalidConfig("base= applies to the image built here; leave it out with image=.")
    if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 1:
        raise InvalidConfig(f"replicas must be a positive integer, not {replicas!r}.")
    progress = progress or (lambda text: None)
    if image is None:
        image = frontdoor_image.push_frontdoor_image(registry, base=base, progress=progress)
    apis = _Apis(kubeconfig)
    try:
        return _install(apis, image, namespace=namespace, replicas=replicas, timeout=timeout,
                        progress=progress, registry=registry)
    finally:
        apis.close()


def _install(apis: Any, image: str, *, namespace: str, replicas: int, timeout: float,
             progress: Progress, registry: ContainerRegistry | None = None,
             sleep: Callable[[float], None] = time.sleep) -> FrontDoorClient:
    """``registry`` given: ``image`` is our own, pulled from it."""
    core, apps, rbac = apis.core, apis.apps, apis.rbac
    for ns in dict.fromkeys((namespace, kube.NAMESPACE)):
        _create_or_keep(f"Namespace {ns}", lambda ns=ns: core.create_namespace({"metadata": {"name": ns}}))
    progress(f"Namespace {namespace}: service account and roles (secrets and endpoints, read-only) ...")
    creators = {
        "ServiceAccount": (lambda b: core.create_namespaced_service_account(namespace, b), None),
        "ClusterRole": (rbac.create_cluster_role, lambda b: rbac.replace_cluster_role(NAME, b)),
        "ClusterRoleBinding": (rbac.create_cluster_role_binding, lambda b: rbac.replace_cluster_role_binding(NAME, b)),
        "Role": (lambda b: rbac.create_namespaced_role(kube.NAMESPACE, b),
                 lambda b: rbac.replace_namespaced_role(NAME, kube.NAMESPACE, b)),
        "RoleBinding": (lambda b: rbac.create_namespaced_role_binding(kube.NAMESPACE, b),
                        lambda b: rbac.replace_namespaced_role_binding(NAME, kube.NAMESPACE, b)),
    }
    for kind, body in rbac_objects(namespace):
        create, replace = creators[kind]
        what = f"{kind} {NAME}"
        if replace is None:
            _create_or_keep(what, lambda create=create, body=body: create(body))
        else:
            _create_or_replace(what, lambda create=create, body=body: create(body),
                               lambda replace=replace, body=body: replace(body))

    token = _admin_token(apis, namespace)
    progress(f"Service {namespace}/{NAME} (LoadBalancer, port {SERVICE_PORT}): waiting for its address ...")
    _apply_service(apis, namespace)
    url = _wait_address(apis, namespace, timeout, sleep)
    if registry is not None:
        secret = pull_secret(PULL_SECRET, LABELS, registry)
        _create_or_replace(f"Secret {namespace}/{PULL_SECRET}",
                           lambda: core.create_namespaced_secret(namespace, secret),
                           lambda: core.replace_namespaced_secret(PULL_SECRET, namespace, secret))
    progress(f"Deployment {namespace}/{NAME} ({replicas} replica(s) of {image}) ...")
    body = deployment_object(image, namespace, replicas, url, own_image=registry is not None)
    _create_or_replace(f"Deployment {namespace}/{NAME}",
                       lambda: apps.create_namespaced_deployment(namespace, body),
                       lambda: apps.replace_namespaced_deployment(NAME, namespace, body))
    _wait_available(apis, namespace, replicas, image, timeout, sleep)
    try:
        publish(core, url, token)
    except Exception as exc:
        raise _failed(f"Publishing ConfigMap/Secret {kube.NAMESPACE}/{NAME}", exc) from exc
    progress(f"The front door is at {url}; clients find it in ConfigMap {kube.NAMESPACE}/{NAME}.")
    return FrontDoorClient(url, token)


def _failed(what: str, exc: Exception) -> ProvisioningFailed:
    status = getattr(exc, "status", None)
    hint = ""
    if status == 403:
        hint = " The kubeconfig's user may not do this: installing needs cluster-admin rights (RBAC objects)."
    elif status == 404:
        hint = (" The cluster does not serve this kind of object; the front door needs ServiceAccounts "
                "and RBAC (rbac.authorization.k8s.io/v1).")
    detail = f"{status} {getattr(exc, 'reason', '')}".strip() if status is not None else f"{type(exc).__name__}: {exc}"
    return ProvisioningFailed(f"{what} failed ({detail}).{hint}")


def _create_or_keep(what: str, create: Callable[[], Any]) -> None:
    from kubernetes.client.exceptions import ApiException

    try:
        create()
    except ApiException as exc:
        if exc.status != 409:
            raise _failed(f"Creating {what}", exc) from exc


def _create_or_replace(what: str, create: Callable[[], Any], replace: Callable[[], Any]) -> None:
    from kubernetes.client.exceptions import ApiException

    try:
        create()
        return
    except ApiException as exc:
        if exc.status != 409:
            raise _failed(f"Creating {what}", exc) from exc
    try:
        replace()
    except ApiException as exc:
        raise _failed(f"Updating {what}", exc) from exc


def _admin_token(apis: Any, namespace: str) -> str:
    """The admin token in Secret ``<namespace>/azureml-fe``, made when there is none: a
    reinstall keeps it, so clients holding it keep working."""
    from kubernetes.client.exceptions import ApiException

    try:
        current = apis.plain(apis.core.read_namespaced_secret(NAME, namespace))
        raw = (current.get("data") or {}).get(kube.ADMIN_TOKEN_KEY)
        if raw:
            return base64.b64decode(raw).decode()
    except ApiException as exc:
        if exc.status != 404:
            raise _failed(f"Reading Secret {namespace}/{NAME}", exc) from exc
        current = None
    token = secrets.token_urlsafe(32)
    body = token_secret(namespace, token)
    try:
        if current is None:
            apis.core.create_namespaced_secret(namespace, body)
        else:
            current["data"] = {**(current.get("data") or {}), **body["data"]}
            apis.core.replace_namespaced_secret(NAME, namespace, current)
    except ApiException as exc:
        raise _failed(f"Writing Secret {namespace}/{NAME}", exc) from exc
    return token


def _apply_service(apis: Any, namespace: str) -> None:
    """Create the Service, or set type, selector and ports on the existing one (its cluster
    IP and load balancer are kept)."""
    from kubernetes.client.exceptions import ApiException

    body = service_object(namespace)
    try:
        apis.core.create_namespaced_service(namespace, body)
        return
    except ApiException as exc:
        if exc.status != 409:
            raise _failed(f"Creating Service {namespace}/{NAME}", exc) from exc
    try:
        current = apis.plain(apis.core.read_namespaced_service(NAME, namespace))
        current["spec"] = {**current.get("spec", {}), **body["spec"]}
        current["metadata"]["labels"] = {**(current["metadata"].get("labels") or {}), **LABELS}
        apis.core.replace_namespaced_service(NAME, namespace, current)
    except ApiException as exc:
        raise _failed(f"Updating Service {namespace}/{NAME}", exc) from exc


def _wait_address(apis: Any, namespace: str, timeout: float, sleep: Callable[[float], None]) -> str:
    deadline = time.monotonic() + timeout
    while True:
        service = apis.plain(apis.core.read_namespaced_service(NAME, namespace))
        for ingress in ((service.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []:
            host = ingress.get("ip") or ingress.get("hostname")
            if host:
                host = f"[{host}]" if ":" in host else host
                # the port the load balancer reports, when it reports one (the emulator's
                # loopback balancers listen on their own ports), else the Service's
                port = next((p.get("port") for p in ingress.get("ports") or [] if p.get("port")), SERVICE_PORT)
                return f"http://{host}" if port == 80 else f"http://{host}:{port}"
        if time.monotonic() >= deadline:
            raise ProvisioningFailed(
                f"Service {namespace}/{NAME} got no load balancer address within {timeout:.0f} s. Does the "
                f"cluster provision LoadBalancer services (AKS does)? See `kubectl -n {namespace} describe "
                f"service {NAME}`; run the install again once it has one.")
        sleep(2.0)


def _wait_available(apis: Any, namespace: str, replicas: int, image: str, timeout: float,
                    sleep: Callable[[float], None]) -> None:
    deadline = time.monotonic() + timeout
    while True:
        deployment = apis.plain(apis.apps.read_namespaced_deployment(NAME, namespace))
        meta, status = deployment.get("metadata") or {}, deployment.get("status") or {}
        if (status.get("observedGeneration", 0) >= meta.get("generation", 0)
                and status.get("updatedReplicas", 0) >= replicas and status.get("availableReplicas", 0) >= replicas
                and status.get("replicas", 0) == status.get("updatedReplicas", 0)):
            return
        if time.monotonic() >= deadline:
            raise ProvisioningFailed(
                f"Deployment {namespace}/{NAME} has {status.get('availableReplicas', 0)} of {replicas} replica(s) "
                f"available after {timeout:.0f} s. Check that image {image!r} can be pulled and has "
                f"aml-provider-aks installed: `kubectl -n {namespace} describe pods -l app={NAME}` and "
                f"`kubectl -n {namespace} logs deployment/{NAME}`.")
        sleep(2.0)
