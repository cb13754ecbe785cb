"""Deploy a packaged image to the cluster with the official ``kubernetes`` client.

Per service, in its namespace (default ``default``): a ``kubernetes.io/dockerconfigjson``
Secret ``<name>-pull`` for the profile's registry, a Deployment ``<name>`` (readiness probe
``GET /`` on 5001, liveness with the configuration's probe settings), a LoadBalancer Service
``<name>`` and, with autoscale, an ``autoscaling/v2`` HPA ``<name>``. The scoring URI is the
Service's load balancer (the front door is not wired in yet).
"""

from __future__ import annotations

import base64
import json
import time

import attrs

from aml_core.errors import InvalidConfig, NotFound, ProvisioningFailed
from aml_core.records import DeploymentSpec, ServiceRecord, utcnow
from aml_core.workspace import Workspace

from aml_provider_aks.config import KIND, AksServiceDeploymentConfiguration
from aml_provider_aks.provision import kubeconfig_for

ROLLOUT_TIMEOUT = 300.0
LB_ANNOTATION = "emulator.aml/url"


def _api(kubeconfig: str):
    from kubernetes import config

    return config.new_client_from_config(config_file=kubeconfig)


def _package(workspace: Workspace, spec: DeploymentSpec, progress) -> tuple[str, object]:
    from aml_core.images import build_and_store, workspace_registry

    if not workspace.container_registry.startswith("profile:"):
        raise InvalidConfig(
            f"AKS deployments pull their image from a registry the cluster can reach, but workspace "
            f"{workspace.name!r} keeps images in its embedded store. Create it with "
            f"Workspace.create(path, container_registry='profile:emulator') (or your Azure profile).")
    image = build_and_store(workspace, spec.models, spec.inference_config, image_name=spec.name, progress=progress)
    return image.location, workspace_registry(workspace)


def _secret(name: str, registry) -> dict:
    auth = base64.b64encode(f"{registry.username}:{registry.password}".encode()).decode()
    cfg = {"auths": {registry.address: {"username": registry.username, "password": registry.password, "auth": auth}}}
    return {"metadata": {"name": f"{name}-pull", "labels": {"aml.service": name}},
            "type": "kubernetes.io/dockerconfigjson",
            "data": {".dockerconfigjson": base64.b64encode(json.dumps(cfg).encode()).decode()}}


def _deployment(name: str, image: str, config: AksServiceDeploymentConfiguration) -> dict:
    resources = {"requests": {"cpu": str(config.effective_cpu_cores), "memory": f"{config.effective_memory_gb}Gi"}}
    limits = {}
    if config.cpu_cores_limit:
        limits["cpu"] = str(config.cpu_cores_limit)
    if config.memory_gb_limit:
        limits["memory"] = f"{config.memory_gb_limit}Gi"
    if limits:
        resources["limits"] = limits
    container = {
        "name": "score", "image": image, "ports": [{"containerPort": 5001, "name": "http"}],
        "env": [{"name": "SCORING_TIMEOUT_MS", "value": str(config.effective_scoring_timeout_ms)},
                {"name": "SERVICE_NAME", "value": name}],
        "resources": resources,
        "readinessProbe": {"httpGet": {"path": "/", "port": 5001}, "periodSeconds": 1, "failureThreshold": 3},
        "livenessProbe": {"httpGet": {"path": "/", "port": 5001},
                          "periodSeconds": config.effective_period_seconds,
                          "initialDelaySeconds": config.effective_initial_delay_seconds,
                          "timeoutSeconds": config.effective_timeout_seconds,
                          "successThreshold": config.effective_success_threshold,
                          "failureThreshold": config.effective_failure_threshold},
    }
    replicas = config.effective_min_replicas if config.effective_autoscale_enabled else config.num_replicas
    labels = {"app": name, "aml.service": name}
    return {"metadata": {"name": name, "labels": labels},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                     "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 0}},
                     "template": {"metadata": {"labels": labels},
                                  "spec": {"containers": [container], "imagePullSecrets": [{"name": f"{name}-pull"}]}}}}


def _hpa(name: str, config: AksServiceDeploymentConfiguration) -> dict:
    return {"metadata": {"name": name, "labels": {"aml.service": name}},
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
                     "minReplicas": config.effective_min_replicas, "maxReplicas": config.effective_max_replicas,
                     "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {
                         "type": "Utilization", "averageUtilization": config.effective_target_utilization}}}]}}


def _apply(create, replace, read, namespace: str, name: str, body: dict) -> None:
    from kubernetes.client.exceptions import ApiException

    try:
        read(name, namespace)
    except ApiException as exc:
        if exc.status != 404:
            raise
        create(namespace, body)
        return
    replace(name, namespace, body)


def _apply_all(api, namespace: str, name: str, image: str, registry, config, progress) -> None:
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    core, apps, scaling = client.CoreV1Api(api), client.AppsV1Api(api), client.AutoscalingV2Api(api)
    progress(f"Applying Secret, Deployment and Service {name!r} in namespace {namespace!r}")
    _apply(core.create_namespaced_secret, core.replace_namespaced_secret, core.read_namespaced_secret,
           namespace, f"{name}-pull", _secret(name, registry))
    _apply(apps.create_namespaced_deployment, apps.patch_namespaced_deployment, apps.read_namespaced_deployment,
           namespace, name, _deployment(name, image, config))
    service = {"metadata": {"name": name, "labels": {"aml.service": name}},
               "spec": {"type": "LoadBalancer", "selector": {"app": name},
                        "ports": [{"name": "http", "port": 80, "targetPort": 5001}]}}
    try:
        core.read_namespaced_service(name, namespace)
    except ApiException as exc:
        if exc.status != 404:
            raise
        core.create_namespaced_service(namespace, service)
    if config.effective_autoscale_enabled:
        _apply(scaling.create_namespaced_horizontal_pod_autoscaler,
               scaling.replace_namespaced_horizontal_pod_autoscaler,
               scaling.read_namespaced_horizontal_pod_autoscaler, namespace, name, _hpa(name, config))
    else:
        try:
            scaling.delete_namespaced_horizontal_pod_autoscaler(name, namespace)
        except ApiException as exc:
            if exc.status != 404:
                raise


def _pod_failure(core, namespace: str, name: str) -> str | None:
    for pod in core.list_namespaced_pod(namespace, label_selector=f"app={name}").items:
        for status in pod.status.container_statuses or []:
            waiting = status.state.waiting if status.state else None
            if waiting and waiting.reason in ("CrashLoopBackOff", "ErrImagePull", "ImagePullBackOff",
                                              "RunContainerError", "CreateContainerConfigError"):
                return f"{waiting.reason} in pod {pod.metadata.name}"
            if status.restart_count and status.restart_count >= 1 and not status.ready:
                return f"CrashLoopBackOff in pod {pod.metadata.name} (restarts: {status.restart_count})"
    return None


#: seconds an image pull may keep failing before the deployment is declared failed
IMAGE_PULL_GRACE = 30.0


def _only_current_pods(core, namespace: str, name: str, want: int) -> bool:
    """True once the old replicas are gone: until then a kept-alive connection may still
    reach the previous version, and the caller is told the update is done."""
    pods = core.list_namespaced_pod(namespace, label_selector=f"app={name}").items
    return len(pods) == want and all(p.metadata.deletion_timestamp is None for p in pods)


def _wait_rollout(api, namespace: str, name: str, progress) -> str:
    """Wait until the Deployment is rolled out; returns the Service's scoring base URL."""
    from kubernetes import client

    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    deadline = time.monotonic() + ROLLOUT_TIMEOUT
    pull_failing_since: float | None = None
    while time.monotonic() < deadline:
        dep = apps.read_namespaced_deployment(name, namespace)
        st = dep.status
        want = dep.spec.replicas or 0
        if st and (st.observed_generation or 0) >= (dep.metadata.generation or 0) and (st.updated_replicas or 0) == want \
                and (st.available_replicas or 0) >= want and (st.replicas or 0) == want \
                and _only_current_pods(core, namespace, name, want):
            svc = core.read_namespaced_service(name, namespace)
            url = (svc.metadata.annotations or {}).get(LB_ANNOTATION)
            ingress = (svc.status.load_balancer.ingress or []) if svc.status and svc.status.load_balancer else []
            if url:
                return url
            if ingress and (ingress[0].ip or ingress[0].hostname):
                return f"http://{ingress[0].ip or ingress[0].hostname}:80"
        failure = _pod_failure(core, namespace, name)
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
        time.sleep(0.5)
    raise ProvisioningFailed(f"Service {name!r} was not rolled out within {ROLLOUT_TIMEOUT:.0f} s; see service.get_logs().")


def _namespace(config: AksServiceDeploymentConfiguration) -> str:
    return config.namespace or "default"


def deploy(workspace: Workspace, spec: DeploymentSpec, *, existing: ServiceRecord | None = None) -> ServiceRecord:
    progress = spec.progress or (lambda text: None)
    config = spec.deployment_config
    if not isinstance(config, AksServiceDeploymentConfiguration):
        raise InvalidConfig(f"AKS deployments need AksWebservice.deploy_configuration(...), got {type(config).__name__}.")
    if config.effective_auth_enabled or config.token_auth_enabled:
        if config.auth_enabled or config.token_auth_enabled:
            from aml_core.errors import NotSupported

            raise NotSupported(KIND, "key or token auth",
                               "(the front door is not wired into this provider yet; pass auth_enabled=False)")
    kubeconfig = kubeconfig_for(workspace, spec.compute_target)
    image, registry = _package(workspace, spec, progress)
    api = _api(kubeconfig)
    namespace = _namespace(config)
    record = ServiceRecord(name=spec.name, kind=KIND, state="Transitioning", models=tuple(m.id for m in spec.models),
                           auth_mode="none", tags=dict(config.tags or {}), properties=dict(config.properties or {}),
                           details={"namespace": namespace, "kubeconfig": kubeconfig, "image": image,
                                    "compute_target": spec.compute_target})
    try:
        _apply_all(api, namespace, spec.name, image, registry, config, progress)
        progress("Waiting for the rollout")
        url = _wait_rollout(api, namespace, spec.name, progress)
    except ProvisioningFailed as exc:
        if existing is None:
            exc.record = attrs.evolve(record, state="Failed", error=str(exc))
        raise
    finally:
        api.close()
    created = existing.created_time if existing else record.created_time
    return attrs.evolve(record, state="Healthy", scoring_uri=f"{url}/score", swagger_uri=f"{url}/swagger.json",
                        created_time=created, updated_time=utcnow())


def status(service: ServiceRecord) -> ServiceRecord:
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    api = _api(service.details["kubeconfig"])
    try:
        core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
        ns = service.details["namespace"]
        try:
            dep = apps.read_namespaced_deployment(service.name, ns)
        except ApiException as exc:
            if exc.status == 404:
                return attrs.evolve(service, state="Failed", error="its Deployment is gone from the cluster")
            raise
        failure = _pod_failure(core, ns, service.name)
        if failure:
            return attrs.evolve(service, state="Failed", error=f"{failure}; see get_logs()")
        ready = (dep.status.ready_replicas or 0) if dep.status else 0
        state = "Healthy" if ready >= 1 else "Unhealthy"
        if dep.status and (dep.status.updated_replicas or 0) < (dep.spec.replicas or 0):
            state = "Transitioning"
        return attrs.evolve(service, state=state, error=None if state == "Healthy" else service.error)
    finally:
        api.close()


def logs(service: ServiceRecord, num_lines: int) -> str:
    from kubernetes import client

    api = _api(service.details["kubeconfig"])
    try:
        core = client.CoreV1Api(api)
        ns = service.details["namespace"]
        pods = core.list_namespaced_pod(ns, label_selector=f"app={service.name}").items
        if not pods:
            raise NotFound(f"Service {service.name!r} has no pods, so no logs.")
        parts = []
        for pod in sorted(pods, key=lambda p: p.metadata.name):
            text = core.read_namespaced_pod_log(pod.metadata.name, ns, container="score", tail_lines=num_lines)
            parts.append(f"--- pod {pod.metadata.name} ---\n{text}")
        return "\n".join(parts)
    finally:
        api.close()


def delete(service: ServiceRecord) -> bool:
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    api = _api(service.details["kubeconfig"])
    found = False
    try:
        core, apps, scaling = client.CoreV1Api(api), client.AppsV1Api(api), client.AutoscalingV2Api(api)
        ns, name = service.details["namespace"], service.name
        for call, obj in ((scaling.delete_namespaced_horizontal_pod_autoscaler, name),
                          (core.delete_namespaced_service, name),
                          (apps.delete_namespaced_deployment, name),
                          (core.delete_namespaced_secret, f"{name}-pull")):
            try:
                call(obj, ns, propagation_policy="Foreground") if call == apps.delete_namespaced_deployment \
                    else call(obj, ns)
                found = True
            except ApiException as exc:
                if exc.status != 404:
                    raise
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and core.list_namespaced_pod(ns, label_selector=f"app={name}").items:
            time.sleep(0.3)
    finally:
        api.close()
    return found
