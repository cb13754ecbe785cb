"""Deploy, inspect, update and delete ACI services through azure-mgmt-containerinstance.

A service is one container group named after it, in the cloud profile's resource group, with
one container running the service's image (pulled with the workspace registry's credentials,
given in the group's ``imageRegistryCredentials``). ACI has no front door, so key auth and
TLS happen in the container: the scoring runtime reads the keys from ``AML_SCORING_KEYS``
and the certificate from ``AML_TLS_CERT_PEM``/``AML_TLS_KEY_PEM``, all three passed as
``secureValue`` (ARM never returns them).

What the workspace keeps, per service, in ``services/aci/<name>.json`` (mode 0600: it holds
the keys and the certificate's key): the keys, and the last container group definition that
served, which an update that fails is rolled back to.
"""

from __future__ import annotations

import json
import os
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import attrs
import requests
import urllib3

from aml_core.errors import AuthError, InvalidConfig, NotFound, ProvisioningFailed
from aml_core.records import AuthRequest, AuthResult, DeploymentSpec, ServiceRecord, utcnow
from aml_core.workspace import Workspace

from aml_provider_aci.config import KIND, AciServiceDeploymentConfiguration

#: the port the scoring runtime serves on inside the image (azureml's convention)
SCORING_PORT = 5001
#: seconds a new container gets to answer its liveness route (init() loads the model)
READY_TIMEOUT = float(os.environ.get("AML_ACI_READY_TIMEOUT", "300"))
#: seconds between two looks at a starting container
_POLL = 0.1
_GROUP_CHECK_EVERY = 1.0


def _client(profile=None):
    from azure.mgmt.containerinstance import ContainerInstanceManagementClient

    from aml_azure_common import management_client

    return management_client(ContainerInstanceManagementClient, profile)


def _profile():
    from aml_core.profiles import CloudProfile

    return CloudProfile.load()


def _config_of(spec: DeploymentSpec) -> AciServiceDeploymentConfiguration:
    config = spec.deployment_config
    if not isinstance(config, AciServiceDeploymentConfiguration):
        raise InvalidConfig(f"ACI deployments need AciWebservice.deploy_configuration(...), got "
                            f"{type(config).__name__}.")
    return config


# -- the private per-service file -------------------------------------------------------------


def _state_path(workspace: Workspace, name: str) -> Path:
    return workspace.root / "services" / KIND / f"{name}.json"


def _read_state(workspace: Workspace, name: str) -> dict[str, Any]:
    try:
        return json.loads(_state_path(workspace, name).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}


def _write_state(workspace: Workspace, name: str, state: dict[str, Any]) -> None:
    path = _state_path(workspace, name)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(state, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


# -- the container group ----------------------------------------------------------------------


def _keys_for(config: AciServiceDeploymentConfiguration, previous: dict[str, Any]) -> dict[str, str] | None:
    from aml_azure_common import new_service_key

    if not config.effective_auth_enabled:
        return None
    old = previous.get("keys") or {}
    return {"primary": config.primary_key or old.get("primary") or new_service_key(),
            "secondary": config.secondary_key or old.get("secondary") or new_service_key()}


def _environment(config: AciServiceDeploymentConfiguration, keys: dict[str, str] | None,
                 tls: tuple[str, str] | None) -> list[dict[str, str]]:
    env = [{"name": "AML_APP_INSIGHTS_ENABLED", "value": str(bool(config.enable_app_insights)).lower()},
           {"name": "AML_MODEL_DC_STORAGE_ENABLED", "value": str(bool(config.collect_model_data)).lower()}]
    if keys:
        env.append({"name": "AML_SCORING_KEYS", "secureValue": f"{keys['primary']},{keys['secondary']}"})
    if tls:
        env += [{"name": "AML_TLS_CERT_PEM", "secureValue": tls[0]}, {"name": "AML_TLS_KEY_PEM", "secureValue": tls[1]}]
    return env


def _tls(config: AciServiceDeploymentConfiguration) -> tuple[str, str] | None:
    if not config.effective_ssl_enabled:
        return None
    try:
        return (Path(config.ssl_cert_pem_file).expanduser().read_text(encoding="utf-8"),
                Path(config.ssl_key_pem_file).expanduser().read_text(encoding="utf-8"))
    except OSError as exc:
        raise InvalidConfig(f"The SSL certificate or key cannot be read: {exc}. Check ssl_cert_pem_file and "
                            f"ssl_key_pem_file.") from None


def group_body(name: str, image: str, registry: Any, config: AciServiceDeploymentConfiguration, location: str,
               keys: dict[str, str] | None, tls: tuple[str, str] | None) -> dict[str, Any]:
    """The container group definition of a service (REST shape, as the SDK accepts it)."""
    tags = {**(config.tags or {}), "aml.service": name}
    ip: dict[str, Any] = {"type": "Public", "ports": [{"protocol": "TCP", "port": SCORING_PORT}]}
    if config.dns_name_label:
        ip["dnsNameLabel"] = config.dns_name_label
    credentials = []
    if registry is not None and registry.username:
        credentials.append({"server": registry.address, "username": registry.username, "password": registry.password})
    return {
        "location": location, "tags": tags,
        "properties": {
            "osType": "Linux", "restartPolicy": "Always", "ipAddress": ip,
            "imageRegistryCredentials": credentials,
            "containers": [{"name": name, "properties": {
                "image": image, "ports": [{"protocol": "TCP", "port": SCORING_PORT}],
                "environmentVariables": _environment(config, keys, tls),
                "resources": {"requests": {"cpu": config.effective_cpu_cores,
                                           "memoryInGB": config.effective_memory_gb}}}}],
        },
    }


def _uris(group: Any, ssl: bool) -> tuple[str | None, str | None]:
    ip = group.ip_address
    if ip is None or not ip.ip or not ip.ports:
        return None, None
    base = f"{'https' if ssl else 'http'}://{ip.ip}:{ip.ports[0].port}"
    return f"{base}/score", f"{base}/swagger.json"


def _container_problem(group: Any) -> str | None:
    """Why the group's container does not serve, from its instance view (``None``: no problem)."""
    if group.provisioning_state == "Failed":
        events = [e.message for c in group.containers for e in (c.instance_view.events if c.instance_view else [])
                  if e.type == "Warning"]
        return events[-1] if events else "the container group failed to provision"
    if group.instance_view is not None and group.instance_view.state == "Stopped":
        return "the container group is stopped (start it: az container start, or container_groups.begin_start)"
    for container in group.containers:
        view = container.instance_view
        if view is None or view.current_state is None:
            continue
        state = view.current_state
        if state.state == "Terminated" or (view.restart_count or 0) > 0 and state.state != "Running":
            return (f"container {container.name!r} is {state.state} (exit code {state.exit_code}, "
                    f"{view.restart_count or 0} restart(s))")
        if (view.restart_count or 0) > 0 and view.previous_state is not None \
                and view.previous_state.exit_code not in (None, 0):
            return (f"container {container.name!r} exited with code {view.previous_state.exit_code} and was "
                    f"restarted {view.restart_count} time(s)")
    return None


def _wait_serving(client: Any, resource_group: str, name: str, group: Any, ssl: bool,
                  progress: Callable[[str], None]) -> Any:
    """Wait until the new container answers its liveness route; fail as soon as ACI shows it
    crashed. Returns the group as last read."""
    scoring_uri, _ = _uris(group, ssl)
    if scoring_uri is None:
        raise ProvisioningFailed(f"Container group {name!r} has no public IP address and port.")
    health = scoring_uri.rsplit("/", 1)[0] + "/"
    progress(f"Waiting for the scoring server at {health}")
    deadline = time.monotonic() + READY_TIMEOUT
    next_check = 0.0
    while time.monotonic() < deadline:
        try:
            # liveness only, no credential sent: the certificate is checked by the callers of
            # scoring_uri, against the CA they trust (it may be the user's own)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", urllib3.exceptions.InsecureRequestWarning)
                if requests.get(health, timeout=2, verify=False).status_code == 200:
                    return group
        except requests.RequestException:
            pass
        if time.monotonic() >= next_check:
            group = client.container_groups.get(resource_group, name)
            problem = _container_problem(group)
            if problem:
                raise ProvisioningFailed(f"Service {name!r} failed: {problem}. Call service.get_logs() to see why.")
            next_check = time.monotonic() + _GROUP_CHECK_EVERY
        time.sleep(_POLL)
    raise ProvisioningFailed(f"Service {name!r} did not answer at {health} within {READY_TIMEOUT:.0f} s; "
                             f"call service.get_logs() to see why (AML_ACI_READY_TIMEOUT sets the limit).")


def _apply(client: Any, resource_group: str, name: str, body: dict[str, Any], ssl: bool,
           progress: Callable[[str], None]) -> Any:
    from aml_azure_common import arm_errors, wait_for

    what = f"Creating or updating container group {name!r} in resource group {resource_group!r}"
    with arm_errors(what, fix="See the container group's events with service.get_logs()."):
        group = wait_for(client.container_groups.begin_create_or_update(resource_group, name, body),
                         what=what, progress=progress)
    return _wait_serving(client, resource_group, name, group, ssl, progress)


def _must_recreate(old: dict[str, Any], new: dict[str, Any]) -> bool:
    """Azure refuses to change CPU, memory, OS or restart policy in place (or the location)."""
    def shape(body):
        props = body["properties"]
        return (body["location"], props["osType"], props["restartPolicy"],
                [c["properties"]["resources"] for c in props["containers"]])

    return shape(old) != shape(new)


def _delete_group(client: Any, resource_group: str, name: str, progress: Callable[[str], None]) -> bool:
    """Delete the group; ``False`` when it was already gone."""
    from azure.core.exceptions import ResourceNotFoundError

    from aml_azure_common import arm_errors, wait_for

    what = f"Deleting container group {name!r}"
    try:
        with arm_errors(what):
            wait_for(client.container_groups.begin_delete(resource_group, name), what=what, progress=progress)
    except NotFound as exc:  # already gone: what delete wants
        if not isinstance(exc.__cause__, ResourceNotFoundError):
            raise
        return False
    return True


def deploy(workspace: Workspace, spec: DeploymentSpec, *, existing: ServiceRecord | None = None) -> ServiceRecord:
    from aml_core.images import deployment_image

    progress = spec.progress or (lambda text: None)
    config = _config_of(spec)
    if not workspace.container_registry.startswith("profile:"):
        raise InvalidConfig(
            f"ACI pulls the service's image from a registry it can reach, but workspace {workspace.name!r} keeps "
            f"images in its embedded store. Create it with Workspace.create(path, "
            f"container_registry='profile:emulator') (or your Azure profile).")
    profile = _profile()
    client = _client(profile)
    resource_group = profile.resource_group
    location = config.location or profile.extra.get("location") or "westus"
    previous = _read_state(workspace, spec.name) if existing is not None else {}
    keys = _keys_for(config, previous)
    tls = _tls(config)
    image, registry = deployment_image(workspace, spec, progress)
    body = group_body(spec.name, image, registry, config, location, keys, tls)
    record = ServiceRecord(name=spec.name, kind=KIND, state="Transitioning", models=tuple(m.id for m in spec.models),
                           auth_mode="key" if keys else "none", tags=dict(config.tags or {}),
                           properties=dict(config.properties or {}),
                           details={"resource_group": resource_group, "container_group": spec.name,
                                    "location": location, "image": image, "ssl": bool(tls),
                                    "dns_name_label": config.dns_name_label})
    old_body = previous.get("body")
    try:
        if old_body is not None and _must_recreate(old_body, body):
            progress("CPU, memory or location changed: ACI needs the container group deleted and created again")
            _delete_group(client, resource_group, spec.name, progress)
        group = _apply(client, resource_group, spec.name, body, bool(tls), progress)
    except ProvisioningFailed as exc:
        if old_body is not None:
            progress("The new version does not serve; rolling back to the previous one")
            _rollback(client, resource_group, spec.name, old_body, previous, progress)
            raise ProvisioningFailed(f"{exc} The service was rolled back to its previous version.") from exc
        exc.record = attrs.evolve(record, state="Failed", error=str(exc))
        _write_state(workspace, spec.name, {"keys": keys, "body": None})
        raise
    _write_state(workspace, spec.name, {"keys": keys, "body": body})
    scoring_uri, swagger_uri = _uris(group, bool(tls))
    details = {**record.details, "fqdn": group.ip_address.fqdn if group.ip_address else None}
    created = existing.created_time if existing else record.created_time
    return attrs.evolve(record, state="Healthy", scoring_uri=scoring_uri, swagger_uri=swagger_uri, details=details,
                        created_time=created, updated_time=utcnow())


def _rollback(client: Any, resource_group: str, name: str, old_body: dict[str, Any], previous: dict[str, Any],
              progress: Callable[[str], None]) -> None:
    try:
        ssl = any(v["name"] == "AML_TLS_CERT_PEM"
                  for v in old_body["properties"]["containers"][0]["properties"]["environmentVariables"])
        _apply(client, resource_group, name, old_body, ssl, progress)
    except Exception as exc:  # the rollback failing is worth saying, but the update's error comes first
        progress(f"Rolling back failed too: {exc}")


def status(workspace: Workspace, service: ServiceRecord) -> ServiceRecord:
    """Healthy when the group provisioned and its container runs; Transitioning while ARM
    works on it; Unhealthy when its container crashed or the group is stopped; Failed when
    provisioning failed or the group is gone."""
    from azure.core.exceptions import ResourceNotFoundError

    from aml_azure_common import arm_errors

    details = service.details
    client = _client()
    try:
        with arm_errors(f"Reading container group {details['container_group']!r}"):
            group = client.container_groups.get(details["resource_group"], details["container_group"])
    except NotFound as exc:
        if isinstance(exc.__cause__, ResourceNotFoundError):
            return attrs.evolve(service, state="Failed", error="its container group is gone from Azure; deploy it again")
        raise
    scoring_uri, swagger_uri = _uris(group, bool(details.get("ssl")))
    if group.provisioning_state in ("Creating", "Updating", "Pending", "Repairing", "Deleting"):
        state, error = "Transitioning", None
    else:
        problem = _container_problem(group)
        if group.provisioning_state == "Failed":
            state, error = "Failed", f"{problem}; see get_logs()"
        elif problem:
            state, error = "Unhealthy", f"{problem}; see get_logs()"
        else:
            state, error = "Healthy", None
    return attrs.evolve(service, state=state, error=error, scoring_uri=scoring_uri or service.scoring_uri,
                        swagger_uri=swagger_uri or service.swagger_uri)


def logs(service: ServiceRecord, num_lines: int) -> str:
    from aml_azure_common import arm_errors

    details = service.details
    with arm_errors(f"Reading the logs of container group {details['container_group']!r}"):
        return _client().containers.list_logs(details["resource_group"], details["container_group"],
                                              details["container_group"], tail=num_lines).content or ""


def delete(workspace: Workspace, service: ServiceRecord) -> bool:
    details = service.details
    deleted = False
    if details.get("container_group"):
        deleted = _delete_group(_client(), details["resource_group"], details["container_group"], lambda text: None)
    _state_path(workspace, service.name).unlink(missing_ok=True)
    return deleted


def auth(workspace: Workspace, service: ServiceRecord, request: AuthRequest) -> AuthResult:
    state = _read_state(workspace, service.name)
    keys = state.get("keys")
    if service.auth_mode != "key" or not keys:
        raise AuthError(f"Key auth is not enabled for service {service.name!r}; update it with "
                        f"auth_enabled=True to get keys.")
    if request.action == "regen_key":
        slot = request.key_type.lower()
        from aml_azure_common import new_service_key

        new_keys = {**keys, slot: request.set_key or new_service_key()}
        body = state["body"]
        for variable in body["properties"]["containers"][0]["properties"]["environmentVariables"]:
            if variable["name"] == "AML_SCORING_KEYS":
                variable["secureValue"] = f"{new_keys['primary']},{new_keys['secondary']}"
        details = service.details
        _apply(_client(), details["resource_group"], details["container_group"], body, bool(details.get("ssl")),
               lambda text: None)
        _write_state(workspace, service.name, {"keys": new_keys, "body": body})
        keys = new_keys
    return AuthResult(primary_key=keys["primary"], secondary_key=keys["secondary"])
