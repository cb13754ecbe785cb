"""Run an accelerator image on an AKS cluster's FPGA nodes, with the official ``kubernetes`` client.

``Webservice.deploy_from_image(ws, name, image, AksWebservice.deploy_configuration(...),
aks_target)`` (or ``Model.deploy`` with ``AccelContainerImage.image_configuration()``) comes
here because the image (configuration) names the ``fpga`` target kind. The AKS compute target
supplies the cluster (its kubeconfig, kept by the AKS provider in the compute record) and the
AKS deployment configuration supplies replicas, auth and keys; both are read as data, so this
provider imports no other.

In the service's namespace: a ``kubernetes.io/dockerconfigjson`` Secret ``<name>-pull``, a
Secret ``<name>-keys`` (the key file the accelerator runtime reads), a Deployment ``<name>``
whose pods request the extended resource ``microsoft.com/fpga`` (one per replica, as the
FPGA device plugin advertises it), and a Service ``<name>`` of type LoadBalancer, port 80 to
the pod's gRPC port. The gRPC endpoint is the Service's load-balancer address; the service key
is checked by the runtime in each pod (the front door speaks HTTP/1.1 only).
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
from collections.abc import Callable
from typing import Any

from aml_core import InvalidConfig, NotFound, ProvisioningFailed, Workspace
from aml_core.records import AuthRequest, AuthResult, DeploymentSpec, PackageRequest, ServiceRecord

from aml_provider_fpga import image as _image

KIND = _image.KIND
#: the extended resource FPGA nodes advertise and each replica requests
FPGA_RESOURCE = "microsoft.com/fpga"
#: the VM sizes with an FPGA (Project Brainwave's PB series)
FPGA_VM_SIZES = ("Standard_PB6s",)
SERVICE_LABEL = "aml.service"
KEYS_ANNOTATION = "aml.keys-digest"
KEYS_MOUNT = "/var/run/aml-keys"
ROLLOUT_TIMEOUT = 300.0
#: seconds a pod may stay Unschedulable (waiting for an FPGA another pod releases) before the
#: rollout is declared failed
SCHEDULING_GRACE = 20.0
SERVICE_PORT = 80
#: bytes of randomness in a service key (32 url-safe characters, as Azure ML's keys)
KEY_BYTES = 24
_FAILING = ("CrashLoopBackOff", "ErrImagePull", "ImagePullBackOff", "RunContainerError",
            "CreateContainerConfigError")


def new_key() -> str:
    return secrets.token_urlsafe(KEY_BYTES)


class Cluster:
    """One connection to the compute target's cluster: ``with Cluster(kubeconfig) as c:``."""

    def __init__(self, kubeconfig: str) -> None:
        from kubernetes import client, config

        self.api = config.new_client_from_config(config_file=kubeconfig)
        self.core = client.CoreV1Api(self.api)
        self.apps = client.AppsV1Api(self.api)

    def __enter__(self) -> Cluster:  # noqa: PYI034 - not subclassed
        return self

    def __exit__(self, *exc: object) -> None:
        self.api.close()


def _missing(exc: Exception) -> bool:
    from kubernetes.client.exceptions import ApiException

    return isinstance(exc, ApiException) and exc.status == 404


def _ignore_missing(call, *args, **kwargs) -> bool:
    try:
        call(*args, **kwargs)
        return True
    except Exception as exc:
        if not _missing(exc):
            raise
        return False


def _compute(workspace: Workspace, name: str | None):
    from aml_core.compute import load_compute

    if not name:
        raise InvalidConfig("an FPGA service runs on an AKS cluster with an FPGA node pool: pass "
                            "deployment_target=AksCompute(ws, name) (provisioned with "
                            "vm_size='Standard_PB6s')")
    record = load_compute(workspace, name)
    if record is None:
        raise NotFound(f"compute target {name!r} does not exist in workspace {workspace.name!r}; "
                       f"create it with ComputeTarget.create(ws, {name!r}, "
                       f"AksCompute.provisioning_configuration(vm_size='Standard_PB6s', ...))")
    if record.kind != "aks" or not record.details.get("kubeconfig"):
        raise InvalidConfig(f"compute target {name!r} is a {record.kind!r} target; FPGA services "
                            f"run on an AKS cluster provisioned with vm_size='Standard_PB6s'")
    return record


def check_fpga_capable(c: Cluster, compute, replicas: int) -> None:
    """Refuse a cluster whose nodes have no FPGA (or too few), naming the VM size and the fix."""
    vm_size = compute.details.get("vm_size")
    fix = (f"create an AKS cluster with an FPGA node pool, e.g. ComputeTarget.create(ws, name, "
           f"AksCompute.provisioning_configuration(vm_size='Standard_PB6s', agent_count={replicas}, "
           f"location='eastus', cluster_purpose='DevTest')), and deploy to it")
    if vm_size and vm_size.lower() not in {s.lower() for s in FPGA_VM_SIZES}:
        raise InvalidConfig(f"compute target {compute.name!r} has {vm_size} nodes, which have no "
                            f"FPGA ({FPGA_RESOURCE}); {fix}")
    nodes = c.core.list_node().items
    fpgas = sum(int((n.status.allocatable or {}).get(FPGA_RESOURCE, 0)) for n in nodes)
    if fpgas < replicas:
        raise InvalidConfig(
            f"compute target {compute.name!r} advertises {fpgas} {FPGA_RESOURCE} on its nodes "
            f"and the service needs {replicas} (one per replica); {fix}")


def _config_values(config: Any) -> tuple[int, bool, str]:
    if getattr(config, "autoscale_enabled", None):
        raise InvalidConfig("FPGA services run a fixed number of replicas (one FPGA each): pass "
                            "AksWebservice.deploy_configuration(autoscale_enabled=False, "
                            "num_replicas=N)")
    replicas = getattr(config, "num_replicas", None) or 1
    auth = getattr(config, "auth_enabled", None)
    namespace = getattr(config, "namespace", None) or "default"
    return int(replicas), True if auth is None else bool(auth), namespace


def _image_record(workspace: Workspace, spec: DeploymentSpec):
    source = spec.inference_config
    if isinstance(source, _image.AccelImageConfiguration):
        return _image.package(workspace, PackageRequest(
            kind=KIND, models=spec.models, inference_config=source, image_name=f"{spec.name}-image"),
            spec.progress or (lambda text: None))
    record = getattr(source, "record", None)
    if record is None or record.details.get("target_kind") != KIND:
        raise InvalidConfig(f"an FPGA service deploys an AccelContainerImage (or its "
                            f"image_configuration()), got {type(source).__name__}")
    return record


def _registry(workspace: Workspace, location: str | None):
    from aml_core.images import workspace_registry

    registry = workspace_registry(workspace)
    if registry is None or not location or location.startswith("oci:"):
        raise InvalidConfig(
            f"the cluster pulls the image from a registry it can reach, but workspace "
            f"{workspace.name!r} keeps images in its embedded store. Create it with "
            f"Workspace.create(path, container_registry='profile:emulator') (or your Azure "
            f"profile) and create the image again")
    return registry


def _pull_secret(name: str, registry) -> dict:
    auth = base64.b64encode(f"{registry.username}:{registry.password}".encode()).decode()
    cfg = {"auths": {registry.address: {"username": registry.username,
                                        "password": registry.password, "auth": auth}}}
    return {"metadata": {"name": name}, "type": "kubernetes.io/dockerconfigjson",
            "data": {".dockerconfigjson": base64.b64encode(json.dumps(cfg).encode()).decode()}}


def _keys_secret(name: str, keys: dict[str, str]) -> dict:
    text = f"{keys['primary']}\n{keys['secondary']}\n"
    return {"metadata": {"name": name, "labels": {SERVICE_LABEL: name.removesuffix("-keys")}},
            "type": "Opaque", "data": {"keys": base64.b64encode(text.encode()).decode()}}


def _keys_digest(keys: dict[str, str]) -> str:
    """A digest of the keys for the pod template: changing the keys rolls the pods, since the
    runtime reads its key file once, at start."""
    return hashlib.sha256(f"{keys['primary']}\n{keys['secondary']}".encode()).hexdigest()[:16]


def _deployment(name: str, image: str, replicas: int, auth: bool, keys: dict[str, str]) -> dict:
    labels = {"app": name, SERVICE_LABEL: name}
    container: dict[str, Any] = {
        "name": "accelerator", "image": image,
        "ports": [{"containerPort": _image.PORT, "name": "grpc"}],
        "resources": {"requests": {FPGA_RESOURCE: "1"}, "limits": {FPGA_RESOURCE: "1"}},
        "readinessProbe": {"tcpSocket": {"port": _image.PORT}, "periodSeconds": 1},
        "env": [{"name": "SERVICE_NAME", "value": name}],
    }
    volumes = []
    if auth:
        container["env"].append({"name": "AML_SCORING_KEYS_FILE", "value": f"{KEYS_MOUNT}/keys"})
        container["volumeMounts"] = [{"name": "keys", "mountPath": KEYS_MOUNT, "readOnly": True}]
        volumes.append({"name": "keys", "secret": {"secretName": f"{name}-keys", "defaultMode": 0o400}})
    return {"metadata": {"name": name, "labels": labels},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                     # one FPGA per pod: a surge pod would wait for the FPGA its predecessor holds
                     "strategy": {"type": "Recreate"},
                     "template": {"metadata": {"labels": labels,
                                               "annotations": {KEYS_ANNOTATION: _keys_digest(keys)}},
                                  "spec": {"containers": [container], "volumes": volumes,
                                           "imagePullSecrets": [{"name": f"{name}-pull"}]}}}}


def _apply(c: Cluster, kind: str, namespace: str, body: dict) -> None:
    name = body["metadata"]["name"]
    read, create, replace = {
        "secret": (c.core.read_namespaced_secret, c.core.create_namespaced_secret,
                   c.core.replace_namespaced_secret),
        "deployment": (c.apps.read_namespaced_deployment, c.apps.create_namespaced_deployment,
                       c.apps.replace_namespaced_deployment),
    }[kind]
    try:
        read(name, namespace)
    except Exception as exc:
        if not _missing(exc):
            raise
        create(namespace, body)
        return
    replace(name, namespace, body)


def _pod_problem(c: Cluster, namespace: str, name: str) -> str | None:
    for pod in c.core.list_namespaced_pod(namespace, label_selector=f"app={name}").items:
        for cond in pod.status.conditions or []:
            if cond.type == "PodScheduled" and cond.status == "False":
                return f"pod {pod.metadata.name} cannot be scheduled: {cond.message}"
        for status in pod.status.container_statuses or []:
            waiting = status.state.waiting if status.state else None
            if waiting and waiting.reason in _FAILING:
                return f"{waiting.reason} in pod {pod.metadata.name}"
    return None


def _endpoint(c: Cluster, namespace: str, name: str) -> tuple[str, int] | None:
    service = c.core.read_namespaced_service(name, namespace)
    for ingress in (service.status.load_balancer.ingress or []) if service.status.load_balancer else []:
        host = ingress.ip or ingress.hostname
        ports = [p.port for p in ingress.ports or [] if p.port]
        if host:
            return host, ports[0] if ports else SERVICE_PORT
    return None


def _rolled_out(c: Cluster, namespace: str, name: str, replicas: int) -> bool:
    """Every replica runs the current template and is available, and no older pod is left."""
    dep = c.apps.read_namespaced_deployment(name, namespace)
    st = dep.status
    if st is None or (st.observed_generation or 0) < (dep.metadata.generation or 0):
        return False
    if (st.updated_replicas or 0) != replicas or (st.available_replicas or 0) < replicas:
        return False
    pods = c.core.list_namespaced_pod(namespace, label_selector=f"app={name}").items
    return len(pods) == replicas and all(p.metadata.deletion_timestamp is None for p in pods)


def _wait(c: Cluster, namespace: str, name: str, replicas: int,
          progress: Callable[[str], None]) -> tuple[str, int]:
    deadline = time.monotonic() + ROLLOUT_TIMEOUT
    progress(f"Waiting for {replicas} replica(s) of {namespace}/{name} on FPGA nodes")
    unschedulable_since: float | None = None
    while time.monotonic() < deadline:
        problem = _pod_problem(c, namespace, name)
        if problem and "cannot be scheduled" in problem:
            # a replaced pod holds its FPGA until it has stopped: wait for it, but not forever
            unschedulable_since = unschedulable_since or time.monotonic()
            if time.monotonic() - unschedulable_since < SCHEDULING_GRACE:
                problem = None
        else:
            unschedulable_since = None
        if problem:
            raise ProvisioningFailed(f"FPGA service {name!r} failed: {problem.rstrip('.')}. See "
                                     f"service.get_logs() or `kubectl -n {namespace} describe pod "
                                     f"-l app={name}`")
        endpoint = _endpoint(c, namespace, name)
        if _rolled_out(c, namespace, name, replicas) and endpoint:
            return endpoint
        time.sleep(0.3)
    raise ProvisioningFailed(f"FPGA service {name!r} was not ready within {ROLLOUT_TIMEOUT:.0f} s")


def deploy(workspace: Workspace, spec: DeploymentSpec) -> ServiceRecord:
    progress = spec.progress or (lambda text: None)
    replicas, auth, namespace = _config_values(spec.deployment_config)
    compute = _compute(workspace, spec.compute_target)
    kubeconfig = compute.details["kubeconfig"]
    with Cluster(kubeconfig) as c:
        check_fpga_capable(c, compute, replicas)
        image = _image_record(workspace, spec)
        registry = _registry(workspace, image.location)
        name = spec.name
        config = spec.deployment_config
        keys = {"primary": getattr(config, "primary_key", None) or new_key(),
                "secondary": getattr(config, "secondary_key", None) or new_key()}
        progress(f"Applying Secret, Deployment and LoadBalancer Service {name!r} in {namespace!r}")
        _apply(c, "secret", namespace, _pull_secret(f"{name}-pull", registry))
        _apply(c, "secret", namespace, _keys_secret(f"{name}-keys", keys))
        _apply(c, "deployment", namespace, _deployment(name, image.location, replicas, auth, keys))
        svc = {"metadata": {"name": name, "labels": {SERVICE_LABEL: name}},
               "spec": {"type": "LoadBalancer", "selector": {"app": name},
                        "ports": [{"name": "grpc", "port": SERVICE_PORT, "targetPort": _image.PORT}]}}
        if not _ignore_missing(c.core.read_namespaced_service, name, namespace):
            c.core.create_namespaced_service(namespace, svc)
        host, port = _wait(c, namespace, name, replicas, progress)
    progress(f"FPGA service {name!r} serves gRPC at {host}:{port}")
    return ServiceRecord(
        name=name, kind=KIND, state="Healthy", scoring_uri=f"http://{host}:{port}",
        models=tuple(m.id for m in spec.models), auth_mode="key" if auth else "none",
        details={"namespace": namespace, "kubeconfig": kubeconfig, "compute": compute.name,
                 "image": f"{image.name}:{image.version}", "address": host, "port": port,
                 "replicas": replicas})


def status(service: ServiceRecord) -> ServiceRecord:
    import attrs

    ns, name = service.details["namespace"], service.name
    try:
        with Cluster(service.details["kubeconfig"]) as c:
            dep = c.apps.read_namespaced_deployment(name, ns)
            problem = _pod_problem(c, ns, name)
    except Exception as exc:
        if not _missing(exc):
            raise
        return attrs.evolve(service, state="Failed",
                            error=f"Deployment {ns}/{name} no longer exists on the cluster")
    want = dep.spec.replicas or 0
    if problem:
        return attrs.evolve(service, state="Unhealthy", error=problem)
    if ((dep.status.available_replicas if dep.status else 0) or 0) >= want:
        return attrs.evolve(service, state="Healthy", error=None)
    return attrs.evolve(service, state="Transitioning", error=None)


def logs(service: ServiceRecord, num_lines: int) -> str:
    from kubernetes.client.exceptions import ApiException

    ns, name = service.details["namespace"], service.name
    with Cluster(service.details["kubeconfig"]) as c:
        pods = c.core.list_namespaced_pod(ns, label_selector=f"app={name}").items
        if not pods:
            raise NotFound(f"FPGA service {name!r} has no pods (is it deleted?)")
        parts = []
        for pod in pods:
            try:
                text = c.core.read_namespaced_pod_log(pod.metadata.name, ns, container="accelerator",
                                                      tail_lines=num_lines)
            except ApiException as exc:  # a pod that never started has no log yet
                text = f"(no log: {exc.reason})"
            parts.append(f"--- {pod.metadata.name}\n{text}")
    return "\n".join(parts)


def delete(service: ServiceRecord) -> bool:
    ns, name = service.details["namespace"], service.name
    with Cluster(service.details["kubeconfig"]) as c:
        found = _ignore_missing(c.core.delete_namespaced_service, name, ns)
        found |= _ignore_missing(c.apps.delete_namespaced_deployment, name, ns,
                                 propagation_policy="Foreground")
        for secret in (f"{name}-pull", f"{name}-keys"):
            found |= _ignore_missing(c.core.delete_namespaced_secret, secret, ns)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and c.core.list_namespaced_pod(
                ns, label_selector=f"app={name}").items:
            time.sleep(0.3)
    return found


def auth(service: ServiceRecord, request: AuthRequest) -> AuthResult:
    ns, name = service.details["namespace"], service.name
    if request.action == "get_token":
        raise InvalidConfig("FPGA services use key auth only (the documents' access_token is the key)")
    with Cluster(service.details["kubeconfig"]) as c:
        secret = c.core.read_namespaced_secret(f"{name}-keys", ns)
        primary, secondary = base64.b64decode(secret.data["keys"]).decode().split()[:2]
        if request.action == "regen_key":
            which = (request.key_type or "").lower()
            if which not in ("primary", "secondary"):
                raise InvalidConfig("regen_key needs key_type 'Primary' or 'Secondary'")
            fresh = new_key()
            primary, secondary = (fresh, secondary) if which == "primary" else (primary, fresh)
            keys = {"primary": primary, "secondary": secondary}
            _apply(c, "secret", ns, _keys_secret(f"{name}-keys", keys))
            # the runtime reads its key file at start: roll the pods so the old key is retired
            # when this returns
            c.apps.patch_namespaced_deployment(name, ns, {"spec": {"template": {"metadata": {
                "annotations": {KEYS_ANNOTATION: _keys_digest(keys)}}}}})
            _wait(c, ns, name, service.details.get("replicas", 1), lambda text: None)
    return AuthResult(primary_key=primary, secondary_key=secondary)
