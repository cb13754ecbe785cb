"""Deploy packaged images to the cluster with the official ``kubernetes`` client.

A service is served by one or more *versions* (a plain ``AksWebservice`` is one version named
like the service; an ``AksEndpoint`` has up to six). Per version, in the service's namespace
(default ``default``): a Deployment and a ClusterIP Service named
``aml_core.frontdoor.deployment_name(service, version)`` (readiness probe ``GET /`` on 5001,
liveness with the configuration's probe settings) and, with autoscale, an ``autoscaling/v2``
HPA of that name; per service a ``kubernetes.io/dockerconfigjson`` Secret ``<service>-pull``
for the registry, and the front door's routing entry, Secret ``<service>-frontdoor``
(auth mode, keys, limits, each version's upstream and traffic share). The cluster's front
door (:mod:`aml_provider_aks.frontdoor`) routes ``/api/v1/service/<service>/score`` by it.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import attrs
from aml_azure_common.keys import new_service_key
from aml_core.errors import AuthError, InvalidConfig, NotFound, ProvisioningFailed
from aml_core.frontdoor import deployment_name, kube
from aml_core.records import AuthRequest, AuthResult, DeploymentSpec, ServiceRecord, utcnow
from aml_core.workspace import Workspace

from aml_provider_aks.config import KIND, AksServiceDeploymentConfiguration
from aml_provider_aks.frontdoor import locate
from aml_provider_aks.provision import kubeconfig_for

ROLLOUT_TIMEOUT = 300.0
#: seconds an image pull may keep failing before the deployment is declared failed
IMAGE_PULL_GRACE = 30.0
SERVICE_LABEL = "aml.service"
VERSION_LABEL = "aml.version"


def api_for(kubeconfig: str):
    from kubernetes import config

    return config.new_client_from_config(config_file=kubeconfig)


class Cluster:
    """The typed API groups of one cluster connection; ``with Cluster(kubeconfig) as c:``."""

    def __init__(self, kubeconfig: str) -> None:
        from kubernetes import client

        self.api = api_for(kubeconfig)
        self.core = client.CoreV1Api(self.api)
        self.apps = client.AppsV1Api(self.api)
        self.scaling = client.AutoscalingV2Api(self.api)

    def __enter__(self) -> Cluster:  # noqa: PYI034 - not subclassed
        return self

    def __exit__(self, *exc: object) -> None:
        self.api.close()


def _missing(exc: Exception) -> bool:
    from kubernetes.client.exceptions import ApiException

    return isinstance(exc, ApiException) and exc.status == 404


# ------------------------------------------------------------------ objects
def package(workspace: Workspace, image_name: str, models, inference_config, progress) -> tuple[str, Any]:
    """Build and push the image; returns its location and the registry's credentials."""
    from aml_core.images import build_and_store, workspace_registry

    if not workspace.container_registry.startswith("profile:"):
        raise InvalidConfig(
            f"AKS deployments pull their image from a registry the cluster can reach, but workspace "
            f"{workspace.name!r} keeps images in its embedded store. Create it with "
            f"Workspace.create(path, container_registry='profile:emulator') (or your Azure profile).")
    image = build_and_store(workspace, models, inference_config, image_name=image_name, progress=progress)
    return image.location, workspace_registry(workspace)


def pull_secret(name: str, labels: dict, registry) -> dict:
    """A ``kubernetes.io/dockerconfigjson`` Secret with ``registry``'s credentials."""
    auth = base64.b64encode(f"{registry.username}:{registry.password}".encode()).decode()
    cfg = {"auths": {registry.address: {"username": registry.username, "password": registry.password, "auth": auth}}}
    return {"metadata": {"name": name, "labels": labels},
            "type": "kubernetes.io/dockerconfigjson",
            "data": {".dockerconfigjson": base64.b64encode(json.dumps(cfg).encode()).decode()}}


def _labels(service: str, version: str) -> dict:
    return {"app": deployment_name(service, version), SERVICE_LABEL: service, VERSION_LABEL: version}


def _deployment(service: str, version: str, image: str, config: AksServiceDeploymentConfiguration) -> dict:
    name = deployment_name(service, version)
    resources: dict[str, Any] = {"requests": {"cpu": str(config.effective_cpu_cores),
                                              "memory": f"{config.effective_memory_gb}Gi"}}
    limits = {}
    if config.cpu_cores_limit:
        limits["cpu"] = str(config.cpu_cores_limit)
    if config.memory_gb_limit:
        limits["memory"] = f"{config.memory_gb_limit}Gi"
    if limits:
        resources["limits"] = limits
    container = {
        "name": "score", "image": image, "ports": [{"containerPort": 5001, "name": kube.PORT_NAME}],
        "env": [{"name": "SCORING_TIMEOUT_MS", "value": str(config.effective_scoring_timeout_ms)},
                {"name": "SERVICE_NAME", "value": service}],
        "resources": resources,
        "readinessProbe": {"httpGet": {"path": "/", "port": 5001}, "periodSeconds": 1, "failureThreshold": 3},
        "livenessProbe": {"httpGet": {"path": "/", "port": 5001},
                          "periodSeconds": config.effective_period_seconds,
                          "initialDelaySeconds": config.effective_initial_delay_seconds,
                          "timeoutSeconds": config.effective_timeout_seconds,
                          "successThreshold": config.effective_success_threshold,
                          "failureThreshold": config.effective_failure_threshold},
    }
    labels = _labels(service, version)
    body: dict[str, Any] = {
        "metadata": {"name": name, "labels": labels},
        "spec": {"selector": {"matchLabels": {"app": name}},
                 "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 0}},
                 "template": {"metadata": {"labels": labels},
                              "spec": {"containers": [container],
                                       "imagePullSecrets": [{"name": f"{service}-pull"}]}}}}
    if not config.effective_autoscale_enabled:
        body["spec"]["replicas"] = config.num_replicas
    return body


def _hpa(service: str, version: str, config: AksServiceDeploymentConfiguration) -> dict:
    """The HPA; ``autoscale_refresh_seconds`` (how often Azure ML's autoscaler may act) is the
    period of its scaling policies: per period at most double or 4 pods more (Kubernetes'
    default amounts, whose period is 15 s), and any decrease."""
    name = deployment_name(service, version)
    period = min(config.effective_refresh_seconds, MAX_POLICY_PERIOD_S)
    return {"metadata": {"name": name, "labels": _labels(service, version)},
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
                     "minReplicas": config.effective_min_replicas, "maxReplicas": config.effective_max_replicas,
                     "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {
                         "type": "Utilization", "averageUtilization": config.effective_target_utilization}}}],
                     "behavior": {
                         "scaleUp": {"selectPolicy": "Max", "policies": [
                             {"type": "Percent", "value": 100, "periodSeconds": period},
                             {"type": "Pods", "value": 4, "periodSeconds": period}]},
                         "scaleDown": {"selectPolicy": "Max", "policies": [
                             {"type": "Percent", "value": 100, "periodSeconds": period}]}}}}


def _apply(create, replace, read, namespace: str, name: str, body: dict) -> None:
    try:
        read(name, namespace)
    except Exception as exc:
        if not _missing(exc):
            raise
        create(namespace, body)
        return
    replace(name, namespace, body)


def apply_version(c: Cluster, namespace: str, service: str, version: str, image: str, registry: Any,
                  config: AksServiceDeploymentConfiguration, progress: Callable[[str], None]) -> None:
    """Create or update one version's Deployment, Service and HPA (and the pull Secret)."""
    name = deployment_name(service, version)
    progress(f"Applying Deployment and Service {name!r} in namespace {namespace!r}")
    _apply(c.core.create_namespaced_secret, c.core.replace_namespaced_secret, c.core.read_namespaced_secret,
           namespace, f"{service}-pull",
           pull_secret(f"{service}-pull", {SERVICE_LABEL: service}, registry))
    deployment = _deployment(service, version, image, config)
    if config.effective_autoscale_enabled:
        # the HPA owns the count; a new Deployment starts at the minimum
        try:
            c.apps.read_namespaced_deployment(name, namespace)
        except Exception as exc:
            if not _missing(exc):
                raise
            deployment["spec"]["replicas"] = config.effective_min_replicas
    _apply(c.apps.create_namespaced_deployment, c.apps.patch_namespaced_deployment,
           c.apps.read_namespaced_deployment, namespace, name, deployment)
    svc = {"metadata": {"name": name, "labels": _labels(service, version)},
           "spec": {"type": "ClusterIP", "selector": {"app": name},
                    "ports": [{"name": kube.PORT_NAME, "port": 80, "targetPort": 5001}]}}
    try:
        c.core.read_namespaced_service(name, namespace)
    except Exception as exc:
        if not _missing(exc):
            raise
        c.core.create_namespaced_service(namespace, svc)
    if config.effective_autoscale_enabled:
        _apply(c.scaling.create_namespaced_horizontal_pod_autoscaler,
               c.scaling.replace_namespaced_horizontal_pod_autoscaler,
               c.scaling.read_namespaced_horizontal_pod_autoscaler, namespace, name, _hpa(service, version, config))
    else:
        _ignore_missing(c.scaling.delete_namespaced_horizontal_pod_autoscaler, name, namespace)


def _ignore_missing(call, *args, **kwargs) -> bool:
    try:
        call(*args, **kwargs)
        return True
    except Exception as exc:
        if not _missing(exc):
            raise
        return False


def delete_version(c: Cluster, namespace: str, service: str, version: str, *, wait: float = 0.0) -> bool:
    """Delete one version's objects; with ``wait``, until its Deployment (and so, in the
    foreground, its pods) is gone or ``wait`` seconds passed."""
    name = deployment_name(service, version)
    found = False
    found |= _ignore_missing(c.scaling.delete_namespaced_horizontal_pod_autoscaler, name, namespace)
    found |= _ignore_missing(c.core.delete_namespaced_service, name, namespace)
    found |= _ignore_missing(c.apps.delete_namespaced_deployment, name, namespace, propagation_policy="Foreground")
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline and _ignore_missing(c.apps.read_namespaced_deployment, name, namespace):
        time.sleep(0.3)
    return found


# ------------------------------------------------------------------ the front door entry
def auth_mode(config: AksServiceDeploymentConfiguration) -> str:
    if config.token_auth_enabled:
        return "token"
    return "key" if config.effective_auth_enabled else "none"


def read_entry(c: Cluster, namespace: str, service: str) -> dict | None:
    try:
        secret = c.core.read_namespaced_secret(kube.entry_secret_name(service), namespace)
    except Exception as exc:
        if not _missing(exc):
            raise
        return None
    parsed = kube.entry_from_secret(c.api.sanitize_for_serialization(secret))
    return parsed[1] if parsed else None


def entry_payload(config: AksServiceDeploymentConfiguration, keys: dict, namespace: str, service: str,
                  versions: dict[str, dict]) -> dict:
    """The admin-API payload; ``versions`` maps a version to its ``traffic_percentile`` and
    ``is_default``."""
    keys = dict(keys)
    token_key = keys.pop("token_key")
    return {"auth": auth_mode(config), "keys": keys, "token_key": token_key,
            "scoring_timeout_ms": config.effective_scoring_timeout_ms,
            "max_concurrent_requests_per_replica": config.replica_max_concurrent_requests or 1,
            "max_queue_wait_ms": config.max_request_wait_time or 500,
            "versions": {v: {"upstream": f"{namespace}/{deployment_name(service, v)}", **share}
                         for v, share in versions.items()}}


def keys_for(config: AksServiceDeploymentConfiguration, previous: dict | None) -> dict:
    """The configuration's keys, else the service's current ones, else new ones; with the
    key that signs its tokens (kept, so tokens outlive updates and front door restarts)."""
    old = (previous or {}).get("keys") or {}
    return {"primary": config.primary_key or old.get("primary") or new_service_key(),
            "secondary": config.secondary_key or old.get("secondary") or new_service_key(),
            "token_key": (previous or {}).get("token_key") or secrets.token_urlsafe(32)}


def write_entry(c: Cluster, namespace: str, service: str, payload: dict) -> None:
    others = c.core.list_secret_for_all_namespaces(label_selector=f"{kube.ENTRY_LABEL}={service}").items
    taken = [s.metadata.namespace for s in others if s.metadata.namespace != namespace]
    if taken:
        raise InvalidConfig(f"A service named {service!r} already exists in namespace {taken[0]!r} of this "
                            f"cluster; the front door routes by name, so pick another name.")
    body = kube.entry_secret(service, namespace, payload)
    _apply(c.core.create_namespaced_secret, c.core.replace_namespaced_secret, c.core.read_namespaced_secret,
           namespace, body["metadata"]["name"], body)


# ------------------------------------------------------------------ rollout
#: the longest period Kubernetes accepts for an HPA scaling policy (seconds)
MAX_POLICY_PERIOD_S = 1800
#: a container's last failure counts towards a crash loop for this long (seconds)
CRASH_RECENT_S = 60.0
_FAILING = ("CrashLoopBackOff", "ErrImagePull", "ImagePullBackOff", "RunContainerError", "CreateContainerConfigError")


def _pod_failure(c: Cluster, namespace: str, selector: str) -> str | None:
    for pod in c.core.list_namespaced_pod(namespace, label_selector=selector).items:
        for status in pod.status.container_statuses or []:
            waiting = status.state.waiting if status.state else None
            if waiting and waiting.reason in _FAILING:
                return f"{waiting.reason} in pod {pod.metadata.name}"
            if _crashing(status):
                return f"CrashLoopBackOff in pod {pod.metadata.name} (restarts: {status.restart_count})"
    return None


def _crashing(status: Any) -> bool:
    """Restarted and failed again lately, but caught between back-off waits (running, not
    ready). One restart is not enough: a replica killed once (by a node, by a test) restarts
    and is fine; nor is a failure long ago."""
    last = status.last_state.terminated if status.last_state else None
    if (status.restart_count or 0) < 2 or status.ready or last is None or not last.finished_at:
        return False
    return (datetime.now(timezone.utc) - last.finished_at).total_seconds() < CRASH_RECENT_S


def _rolled_out(c: Cluster, namespace: str, name: str) -> bool:
    dep = c.apps.read_namespaced_deployment(name, namespace)
    st, want = dep.status, dep.spec.replicas or 0
    if not st or (st.observed_generation or 0) < (dep.metadata.generation or 0):
        return False
    if (st.updated_replicas or 0) != want or (st.available_replicas or 0) < want or (st.replicas or 0) != want:
        return False
    # until the old replicas are gone a kept-alive connection may still reach them
    pods = c.core.list_namespaced_pod(namespace, label_selector=f"app={name}").items
    return len(pods) == want and all(p.metadata.deletion_timestamp is None for p in pods)


def wait_rollout(c: Cluster, namespace: str, name: str, progress: Callable[[str], None]) -> None:
    deadline = time.monotonic() + ROLLOUT_TIMEOUT
    pull_failing_since: float | None = None
    while time.monotonic() < deadline:
        if _rolled_out(c, namespace, name):
            return
        failure = _pod_failure(c, namespace, f"app={name}")
        if failure and failure.startswith(("ErrImagePull", "ImagePullBackOff")):
            # A pull can fail while the registry or the pull secret is still settling; the
            # kubelet retries, so only a failure that persists is final.
            pull_failing_since = pull_failing_since or time.monotonic()
            if time.monotonic() - pull_failing_since < IMAGE_PULL_GRACE:
                failure = None
        elif not failure:
            pull_failing_since = None
        if failure:
            raise ProvisioningFailed(f"Service {name!r} failed: {failure}. Call service.get_logs() to see why.")
        time.sleep(0.3)
    raise ProvisioningFailed(f"Service {name!r} was not rolled out within {ROLLOUT_TIMEOUT:.0f} s; see service.get_logs().")


# ------------------------------------------------------------------ AksWebservice
def _config_of(spec: DeploymentSpec) -> AksServiceDeploymentConfiguration:
    config = spec.deployment_config
    if not isinstance(config, AksServiceDeploymentConfiguration):
        raise InvalidConfig(f"AKS deployments need AksWebservice.deploy_configuration(...), got {type(config).__name__}.")
    return config


def deploy(workspace: Workspace, spec: DeploymentSpec, *, existing: ServiceRecord | None = None) -> ServiceRecord:
    progress = spec.progress or (lambda text: None)
    config = _config_of(spec)
    kubeconfig = kubeconfig_for(workspace, spec.compute_target)
    namespace = config.namespace or "default"
    if existing is not None and existing.details.get("namespace", namespace) != namespace:
        raise InvalidConfig(f"Service {spec.name!r} lives in namespace {existing.details['namespace']!r}; "
                            f"the namespace cannot be changed by update(). Delete and deploy it again.")
    record = ServiceRecord(name=spec.name, kind=KIND, state="Transitioning", models=tuple(m.id for m in spec.models),
                           auth_mode=auth_mode(config), tags=dict(config.tags or {}),
                           properties=dict(config.properties or {}),
                           details={"namespace": namespace, "kubeconfig": kubeconfig,
                                    "compute_target": spec.compute_target})
    try:
        with Cluster(kubeconfig) as c:
            frontdoor = locate(c.core)
            if spec.image is not None:  # Webservice.deploy_from_image: run that image as it is
                from aml_core.images import deployment_image

                image, registry = deployment_image(workspace, spec, progress)
            else:
                image, registry = package(workspace, spec.name, spec.models, spec.inference_config, progress)
            record = attrs.evolve(record, details={**record.details, "image": image})
            apply_version(c, namespace, spec.name, spec.name, image, registry, config, progress)
            progress("Waiting for the rollout")
            wait_rollout(c, namespace, spec.name, progress)
            payload = entry_payload(config, keys_for(config, read_entry(c, namespace, spec.name)), namespace,
                                    spec.name, {spec.name: {"traffic_percentile": None, "is_default": True}})
            write_entry(c, namespace, spec.name, payload)
            progress("Waiting for the front door to route to the service")
            frontdoor.wait_applied(spec.name, payload)
    except ProvisioningFailed as exc:
        if existing is None:
            exc.record = attrs.evolve(record, state="Failed", error=str(exc))
        raise
    created = existing.created_time if existing else record.created_time
    return attrs.evolve(record, state="Healthy", scoring_uri=frontdoor.scoring_uri(spec.name),
                        swagger_uri=frontdoor.swagger_uri(spec.name), created_time=created, updated_time=utcnow())


def _deployments_of(service: ServiceRecord) -> list[str]:
    versions = service.details.get("versions")
    return [deployment_name(service.name, v) for v in versions] if versions else [service.name]


def status(service: ServiceRecord) -> ServiceRecord:
    """The service's state from its Deployments and pods, with the replica counts in
    ``details``: ``replicas`` (what the Deployments ask for now, whoever set it: the
    configuration, the autoscaler or ``kubectl scale``) and ``ready_replicas``.

    ``Failed``: a pod fails (CrashLoopBackOff, image pull ...) and no replica is ready;
    ``Unhealthy``: a pod fails while other replicas serve, or none is ready;
    ``Transitioning``: a rollout or a scale is under way (fewer replicas updated or ready
    than asked for); else ``Healthy``.
    """
    ns = service.details["namespace"]
    with Cluster(service.details["kubeconfig"]) as c:
        states, errors = [], []
        desired = ready = 0
        for name in _deployments_of(service):
            try:
                dep = c.apps.read_namespaced_deployment(name, ns)
            except Exception as exc:
                if not _missing(exc):
                    raise
                return attrs.evolve(service, state="Failed", error=f"its Deployment {name!r} is gone from the cluster")
            st, want = dep.status, dep.spec.replicas or 0
            have = (st.ready_replicas or 0) if st else 0
            desired, ready = desired + want, ready + have
            failure = _pod_failure(c, ns, f"app={name}")
            if failure and not have:
                counts = {**service.details, "replicas": desired, "ready_replicas": ready}
                return attrs.evolve(service, state="Failed", error=f"{failure}; see get_logs()", details=counts)
            if failure:
                states.append("Unhealthy")
                errors.append(f"{failure}; {have} of {want} replicas of {name!r} ready, see get_logs()")
            elif not st or (st.observed_generation or 0) < (dep.metadata.generation or 0) \
                    or (st.updated_replicas or 0) < want or 0 < have < want:
                states.append("Transitioning")
            else:
                states.append("Healthy" if have >= 1 else "Unhealthy")
        details = {**service.details, "replicas": desired, "ready_replicas": ready}
        try:
            frontdoor = locate(c.core)
        except NotFound as exc:
            return attrs.evolve(service, state="Unhealthy", error=str(exc), details=details)
    state = next((s for s in ("Unhealthy", "Transitioning") if s in states), "Healthy")
    error = None if state == "Healthy" else "; ".join(errors) or service.error
    # the front door's address changes when an emulator restarts; its routes do not
    return attrs.evolve(service, state=state, error=error, details=details,
                        scoring_uri=frontdoor.scoring_uri(service.name), swagger_uri=frontdoor.swagger_uri(service.name))


def logs(service: ServiceRecord, num_lines: int) -> str:
    ns = service.details["namespace"]
    with Cluster(service.details["kubeconfig"]) as c:
        pods = c.core.list_namespaced_pod(ns, label_selector=f"{SERVICE_LABEL}={service.name}").items
        if not pods:
            raise NotFound(f"Service {service.name!r} has no pods, so no logs.")
        parts = []
        for pod in sorted(pods, key=lambda p: p.metadata.name):
            text = c.core.read_namespaced_pod_log(pod.metadata.name, ns, container="score", tail_lines=num_lines)
            parts.append(f"--- pod {pod.metadata.name} ---\n{text}")
            for st in pod.status.container_statuses or []:
                if st.restart_count:
                    # the crashed run's output (the traceback) is in the previous container's log
                    try:
                        prev = c.core.read_namespaced_pod_log(pod.metadata.name, ns, container="score",
                                                              tail_lines=num_lines, previous=True)
                    except Exception:  # noqa: BLE001 - the log is gone: show what there is
                        prev = ""
                    if prev:
                        parts.append(f"--- pod {pod.metadata.name} (previous container, restarts: "
                                     f"{st.restart_count}) ---\n{prev}")
        return "\n".join(parts)


def delete(service: ServiceRecord) -> bool:
    ns, name = service.details["namespace"], service.name
    with Cluster(service.details["kubeconfig"]) as c:
        # the route first, so no request is sent to replicas on their way out
        found = _ignore_missing(c.core.delete_namespaced_secret, kube.entry_secret_name(name), ns)
        versions = service.details.get("versions") or {name: {}}
        for version in versions:
            found |= delete_version(c, ns, name, version)
        found |= _ignore_missing(c.core.delete_namespaced_secret, f"{name}-pull", ns)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and c.core.list_namespaced_pod(
                ns, label_selector=f"{SERVICE_LABEL}={name}").items:
            time.sleep(0.3)
    return found


# ------------------------------------------------------------------ auth
def auth(service: ServiceRecord, request: AuthRequest) -> AuthResult:
    ns, name = service.details["namespace"], service.name
    with Cluster(service.details["kubeconfig"]) as c:
        payload = read_entry(c, ns, name)
        if payload is None:
            raise NotFound(f"Service {name!r} has no front door entry on the cluster; redeploy it.")
        if request.action == "get_token":
            if payload.get("auth") != "token":
                raise AuthError(f"Token auth is not enabled for service {name!r}; update it with "
                                f"token_auth_enabled=True (and auth_enabled=False) first.")
            token = locate(c.core).token(name)
            return AuthResult(token=token["accessToken"], refresh_after=token["refreshAfter"],
                              expiry_on=token["expiryOn"])
        if payload.get("auth") != "key":
            raise AuthError(f"Key auth is not enabled for service {name!r} (its auth is {payload.get('auth')!r}); "
                            f"update it with auth_enabled=True to use keys.")
        keys = dict(payload["keys"])
        if request.action == "regen_key":
            slot = request.key_type.lower()
            keys[slot] = request.set_key or new_service_key()
            payload = {**payload, "keys": keys}
            write_entry(c, ns, name, payload)
            # the old key must stop working before this returns
            locate(c.core).wait_applied(name, payload, need_replicas=False)
        return AuthResult(primary_key=keys["primary"], secondary_key=keys["secondary"])
