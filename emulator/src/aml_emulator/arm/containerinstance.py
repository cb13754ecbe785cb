"""``Microsoft.ContainerInstance/containerGroups``: container groups whose containers really run.

Each container's image is pulled from its registry with the group's
``imageRegistryCredentials`` (a wrong password fails the deployment with the registry's
refusal in the group's events, the operation's error and the container's logs) and started
on the core's engine (:class:`aml_core.engines.ProcessEngine` unless the ARM service was given
another as ``services={"engine": ...}``).

Addresses: the emulator has one "public IP", ``127.0.0.1``. Every port the group declares in
``ipAddress.ports`` is given its own free host port, and the group answers with the host ports
in ``ipAddress.ports`` (what a client must call) while each container's ``ports`` keep the
declared container ports. With a ``dnsNameLabel`` the FQDN is
``<label>.<location>.azurecontainer.io`` (informational: it does not resolve offline); a label
is unique per location, as in Azure.

Create-or-update, restart and start are long-running operations
(:mod:`aml_emulator.arm.operations`); a create finishes when every container has started or
an image pull failed. Stop is synchronous. Groups are kept in the ARM state directory and
their containers are started again when the emulator restarts. Limits follow ACI's
documented defaults: 4 CPU and 16 GB per Linux group (``ResourceQuotaExceeded`` beyond), 100
cores and 100 groups (``ContainerGroupQuotaReached``) per region and subscription, 60
containers and 5 ports per group.
"""

from __future__ import annotations

import re
import threading
from typing import Any

import attrs
from starlette.concurrency import run_in_threadpool

from aml_emulator.arm import exceptions
from aml_emulator.arm.containers import PUBLIC_IP, ContainerRuntime, ContainerSet, ContainerSpec, engine, free_port, port_free
from aml_emulator.arm.operations import CREATE, DELETE, UPDATE, WorkStatus, register_status_routes
from aml_emulator.arm.router import COLLECTION, ITEM, ApiVersionRange, ArmRequest, ArmResponse, ResourceProvider

NAMESPACE = "Microsoft.ContainerInstance"
CONTAINER_GROUPS = "containerGroups"
RESOURCE_TYPE = f"{NAMESPACE}/{CONTAINER_GROUPS}"
#: 2018-10-01 is the oldest version with these shapes; 2023-05-01 is the default of
#: azure-mgmt-containerinstance 10.1.0.
API_VERSIONS = ApiVersionRange("2018-10-01", "2023-05-01")

#: ACI's documented per-group limits for standard Linux groups, and the default regional quota
MAX_GROUP_CPU = 4.0
MAX_GROUP_MEMORY_GB = 16.0
REGIONAL_CORE_QUOTA = 100.0
REGIONAL_GROUP_QUOTA = 100
MAX_CONTAINERS = 60
MAX_PORTS = 5
#: the last lines a container's log keeps for list_logs (a stopped ACI keeps 1,000)
LOG_LINES_KEPT = 1000

_DNS_LABEL = re.compile(r"^[a-z][a-z0-9-]{3,61}[a-z0-9]$")
_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")

PROVIDER = ResourceProvider(NAMESPACE, API_VERSIONS)


def _resource_id(subscription_id: str, group: str, name: str) -> str:
    return f"/subscriptions/{subscription_id}/resourceGroups/{group}/providers/{RESOURCE_TYPE}/{name}"


# -- the resource ---------------------------------------------------------------------------


@attrs.define(eq=False)
class ContainerGroupResource:
    """One container group: what was PUT, its provisioning, and its running containers."""

    name: str
    location: str
    #: the ``properties`` as PUT (secure values and registry passwords included: the state
    #: file is 0600); read-only fields are computed on each answer
    properties: dict[str, Any] = attrs.field(repr=False)
    tags: dict[str, str] = attrs.field(factory=dict)
    provisioning_state: str = "Creating"
    #: ``Pending`` | ``Running`` | ``Stopped`` | ``Succeeded`` | ``Failed``
    instance_state: str = "Pending"
    #: declared ipAddress port -> host port
    host_ports: dict[int, int] = attrs.field(factory=dict)
    #: what runs now (not persisted: started again after a restart of the emulator)
    running: ContainerSet | None = attrs.field(default=None, repr=False)
    lock: threading.RLock = attrs.field(factory=threading.RLock, repr=False)

    # -- persistence
    def to_state(self) -> dict[str, Any]:
        return {"name": self.name, "location": self.location, "properties": self.properties, "tags": self.tags,
                "provisioning_state": self.provisioning_state, "instance_state": self.instance_state,
                "host_ports": {str(k): v for k, v in self.host_ports.items()}}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> "ContainerGroupResource":
        provisioning = state.get("provisioning_state", "Succeeded")
        # an operation does not outlive a restart: one cut short is taken as finished
        return cls(name=state["name"], location=state["location"], properties=dict(state["properties"]),
                   tags=dict(state.get("tags") or {}),
                   provisioning_state="Failed" if provisioning == "Failed" else "Succeeded",
                   instance_state=state.get("instance_state", "Running"),
                   host_ports={int(k): int(v) for k, v in (state.get("host_ports") or {}).items()})

    # -- shape helpers
    @property
    def containers(self) -> list[dict[str, Any]]:
        return list(self.properties.get("containers") or [])

    @property
    def dns_label(self) -> str | None:
        return ((self.properties.get("ipAddress") or {}).get("dnsNameLabel") or None)

    @property
    def restart_policy(self) -> str:
        return self.properties.get("restartPolicy") or "Always"

    def cpu(self) -> float:
        return sum(float(c["properties"]["resources"]["requests"]["cpu"]) for c in self.containers)

    def memory(self) -> float:
        return sum(float(c["properties"]["resources"]["requests"]["memoryInGB"]) for c in self.containers)


PROVIDER.persist(CONTAINER_GROUPS, ContainerGroupResource.from_state)


# -- validation -----------------------------------------------------------------------------


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise exceptions.invalid_parameter_message(
            f"The value '{value}' of '{where}' is invalid: it must be a number greater than 0.")
    return float(value)


def _validate(name: str, body: Any) -> tuple[str, dict[str, Any], dict[str, str]]:
    if not _NAME.match(name):
        raise exceptions.ArmError(400, "ContainerGroupNameInvalid",
                                  f"The container group name '{name}' is invalid. A container group name must "
                                  f"contain no more than 63 characters and must match the regex "
                                  f"'[a-z0-9]([-a-z0-9]*[a-z0-9])?' (e.g. 'my-name').")
    if not isinstance(body, dict):
        raise exceptions.invalid_request_content("the body must be a JSON object")
    location = body.get("location")
    if not isinstance(location, str) or not location:
        raise exceptions.ArmError(400, "LocationRequired", "The location property is required for this definition.")
    props = body.get("properties")
    if not isinstance(props, dict):
        raise exceptions.invalid_request_content("'properties' must be a JSON object")
    if props.get("osType") not in ("Linux", "Windows"):
        raise exceptions.invalid_parameter("properties.osType", props.get("osType"), ["Linux", "Windows"])
    if props.get("restartPolicy", "Always") not in ("Always", "OnFailure", "Never"):
        raise exceptions.invalid_parameter("properties.restartPolicy", props.get("restartPolicy"),
                                           ["Always", "OnFailure", "Never"])
    containers = props.get("containers")
    if not isinstance(containers, list) or not containers:
        raise exceptions.invalid_parameter_message("The container group must have at least one container "
                                                   "('properties.containers').")
    if len(containers) > MAX_CONTAINERS:
        raise exceptions.invalid_parameter_message(
            f"The container group has {len(containers)} containers; at most {MAX_CONTAINERS} are allowed.")
    seen: set[str] = set()
    for index, container in enumerate(containers):
        where = f"properties.containers[{index}]"
        cname = container.get("name") if isinstance(container, dict) else None
        if not isinstance(cname, str) or not _NAME.match(cname):
            raise exceptions.invalid_parameter_message(f"The container name '{cname}' of {where} is invalid: "
                                                       f"lowercase letters, digits and '-', at most 63 characters.")
        if cname in seen:
            raise exceptions.invalid_parameter_message(f"The container name '{cname}' is used twice.")
        seen.add(cname)
        cprops = container.get("properties") or {}
        if not isinstance(cprops.get("image"), str) or not cprops["image"].strip():
            raise exceptions.invalid_parameter_message(f"The image of container '{cname}' is required "
                                                       f"('{where}.properties.image').")
        requests_ = ((cprops.get("resources") or {}).get("requests")) or {}
        _number(requests_.get("cpu"), f"{where}.properties.resources.requests.cpu")
        _number(requests_.get("memoryInGB"), f"{where}.properties.resources.requests.memoryInGB")
    ip = props.get("ipAddress")
    if ip is not None:
        ports = ip.get("ports")
        if not isinstance(ports, list) or not ports:
            raise exceptions.invalid_parameter_message("'properties.ipAddress.ports' is required with an IP address.")
        if len(ports) > MAX_PORTS:
            raise exceptions.invalid_parameter_message(
                f"The IP address has {len(ports)} ports; at most {MAX_PORTS} are allowed.")
        for port in ports:
            number = port.get("port") if isinstance(port, dict) else None
            if isinstance(number, bool) or not isinstance(number, int) or not 1 <= number <= 65535:
                raise exceptions.invalid_parameter_message(f"The port '{number}' of the IP address is invalid.")
        if ip.get("type", "Public") not in ("Public", "Private"):
            raise exceptions.invalid_parameter("properties.ipAddress.type", ip.get("type"), ["Public", "Private"])
        label = ip.get("dnsNameLabel")
        if label is not None and (not isinstance(label, str) or not _DNS_LABEL.match(label)):
            raise exceptions.ArmError(
                400, "InvalidDnsNameLabel",
                f"The DNS name label '{label}' in container group '{name}' is invalid. It can contain only "
                f"lowercase letters, numbers and hyphens. The first character must be a letter. The last "
                f"character must be a letter or number. The value must be between 5 and 63 characters long.")
    for credential in props.get("imageRegistryCredentials") or []:
        if not isinstance(credential, dict) or not credential.get("server"):
            raise exceptions.invalid_parameter_message("Every imageRegistryCredentials entry needs a 'server'.")
    tags = {str(k): str(v) for k, v in (body.get("tags") or {}).items()}
    return location, props, tags


def _check_quota(request: ArmRequest, group: ContainerGroupResource, replacing: ContainerGroupResource | None) -> None:
    cpu, memory = group.cpu(), group.memory()
    if cpu > MAX_GROUP_CPU or memory > MAX_GROUP_MEMORY_GB:
        raise exceptions.resource_quota_exceeded(
            f"The requested resource with 'cpu' {cpu:g} and 'memoryInGB' {memory:g} for container group "
            f"'{group.name}' exceeds the limit of {MAX_GROUP_CPU:g} CPU and {MAX_GROUP_MEMORY_GB:g} GB per "
            f"container group in location '{group.location}'. Request less, or split the containers "
            f"into several groups.")
    others = [other for _s, _g, other in request.backend.resources(request.path.subscription_id, None, CONTAINER_GROUPS)
              if other is not replacing and other.location.lower() == group.location.lower()]
    if replacing is None and len(others) >= REGIONAL_GROUP_QUOTA:
        raise exceptions.ArmError(
            400, "ContainerGroupQuotaReached",
            f"Resource type '{RESOURCE_TYPE}' container group quota 'StandardContainerGroups' exceeded in region "
            f"'{group.location}'. Limit: '{REGIONAL_GROUP_QUOTA}', Usage: '{len(others)}', Requested: '1'. Delete "
            f"container groups you no longer use, or ask for a quota increase.")
    used = sum(other.cpu() for other in others)
    if used + cpu > REGIONAL_CORE_QUOTA:
        raise exceptions.resource_quota_exceeded(
            f"Operation results in exceeding quota limits of StandardCores. Maximum allowed: "
            f"{REGIONAL_CORE_QUOTA:g}, Current in use: {used:g}, Additional requested: {cpu:g} in location "
            f"'{group.location}'. Delete other container groups, or ask for a quota increase.")


def _check_dns_label(request: ArmRequest, group: ContainerGroupResource, replacing: ContainerGroupResource | None) -> None:
    label = group.dns_label
    if not label:
        return
    for _s, _g, other in request.backend.resources(request.path.subscription_id, None, CONTAINER_GROUPS):
        if other is not replacing and other.dns_label == label and other.location.lower() == group.location.lower():
            raise exceptions.ArmError(
                409, "DnsNameLabelNotAvailable",
                f"The DNS name label '{label}' in container group '{group.name}' not available. Try using a "
                f"different label.")


# -- running containers ---------------------------------------------------------------------


def _assign_ports(group: ContainerGroupResource) -> None:
    """Give every declared ipAddress port a host port, keeping the ones it had when still free."""
    declared = [p["port"] for p in (group.properties.get("ipAddress") or {}).get("ports") or []]
    kept = {port: host for port, host in group.host_ports.items() if port in declared}
    for port in declared:
        if port not in kept or not port_free(kept[port]):
            kept[port] = free_port()
    group.host_ports = kept


def _specs(group: ContainerGroupResource) -> list[ContainerSpec]:
    credentials = {c["server"]: (c.get("username"), c.get("password"))
                   for c in group.properties.get("imageRegistryCredentials") or []}
    specs = []
    for container in group.containers:
        props = container["properties"]
        env = {}
        for variable in props.get("environmentVariables") or []:
            value = variable.get("secureValue") if variable.get("secureValue") is not None else variable.get("value")
            env[str(variable["name"])] = "" if value is None else str(value)
        ports = [p.get("port") for p in props.get("ports") or []]
        host_port = next((group.host_ports[p] for p in ports if p in group.host_ports), None)
        specs.append(ContainerSpec(name=container["name"], image=props["image"].strip(), env=env,
                                   host_port=host_port, credentials=credentials))
    return specs


def _pull_error(group: ContainerGroupResource) -> exceptions.ArmError | None:
    failure = group.running.pull_failure if group.running is not None else None
    if failure is None:
        return None
    return exceptions.ArmError(
        400, "InaccessibleImage",
        f"The image '{failure.image}' in container group '{group.name}' is not accessible. Please check the "
        f"image and registry credential. ({failure.message})")


def _run_group(backend: Any, group: ContainerGroupResource) -> Any:
    """(Re)start the group's containers; returns the ``work`` of the operation that waits for them."""
    _stop_group(group)
    with group.lock:
        _assign_ports(group)
        group.instance_state = "Pending"
        running = group.running = ContainerSet(engine(backend), _specs(group), restart_policy=group.restart_policy,
                                               label=f"aci-{group.name}")
    running.start()

    def work() -> WorkStatus:
        error = _pull_error(group)
        if error is not None:
            return WorkStatus.failed(error)
        return WorkStatus.finished() if running.started.is_set() else WorkStatus.pending()

    return work


def _stop_group(group: ContainerGroupResource) -> None:
    running = group.running
    if running is not None:
        running.stop()


def _instance_state(group: ContainerGroupResource) -> str:
    """The group's ``instanceView.state``: what its containers do, unless it was stopped or
    failed as a whole (a stop, a failed operation)."""
    if group.instance_state in ("Stopped", "Failed") or group.running is None:
        return group.instance_state
    return group.running.state


def _restore(backend: Any) -> None:
    """After a restart of the emulator: run again every group that was running; from then
    on, a group removed with its resource group stops too."""
    if not backend.services.get("aci_removal_listener"):
        backend.services["aci_removal_listener"] = True
        backend.removal_listeners.append(
            lambda kind, resource: _stop_group(resource) if kind == CONTAINER_GROUPS.lower() else None)
    for _sub, _group, resource in backend.resources_of_type(CONTAINER_GROUPS):
        if resource.provisioning_state == "Succeeded" and resource.instance_state not in ("Stopped", "Failed"):
            _run_group(backend, resource)


def _shutdown(backend: Any) -> None:
    for _sub, _group, resource in backend.resources_of_type(CONTAINER_GROUPS):
        _stop_group(resource)


PROVIDER.on_start.append(_restore)
PROVIDER.on_stop.append(_shutdown)


# -- wire shapes ----------------------------------------------------------------------------


def _instance_view(runtime: ContainerRuntime | None) -> dict[str, Any]:
    if runtime is None:
        return {"restartCount": 0, "currentState": {"state": "Waiting", "detailStatus": ""}, "events": []}
    current = {"state": runtime.state, "detailStatus": runtime.detail}
    if runtime.start_time:
        current["startTime"] = runtime.start_time
    if runtime.state == "Terminated":
        current.update(exitCode=runtime.exit_code, finishTime=runtime.finish_time)
    view = {"restartCount": runtime.restart_count, "currentState": current, "events": list(runtime.events)}
    if runtime.previous:
        view["previousState"] = dict(runtime.previous)
    return view


def _public_containers(group: ContainerGroupResource) -> list[dict[str, Any]]:
    shown = []
    for container in group.containers:
        props = dict(container["properties"])
        # ARM never returns a secure value
        props["environmentVariables"] = [{k: v for k, v in var.items() if k != "secureValue"}
                                         for var in props.get("environmentVariables") or []]
        runtime = group.running.runtimes.get(container["name"]) if group.running is not None else None
        props["instanceView"] = _instance_view(runtime)
        shown.append({"name": container["name"], "properties": props})
    return shown


def group_json(subscription_id: str, resource_group: str, group: ContainerGroupResource) -> dict[str, Any]:
    props = {k: v for k, v in group.properties.items() if k not in ("containers", "imageRegistryCredentials",
                                                                        "ipAddress", "provisioningState",
                                                                        "instanceView")}
    props["provisioningState"] = group.provisioning_state
    props["containers"] = _public_containers(group)
    props["imageRegistryCredentials"] = [{k: v for k, v in c.items() if k != "password"}
                                         for c in group.properties.get("imageRegistryCredentials") or []]
    props.setdefault("restartPolicy", "Always")
    ip = group.properties.get("ipAddress")
    if ip is not None:
        shown_ip = {k: v for k, v in ip.items() if k != "ports"}
        shown_ip["ports"] = [{"protocol": p.get("protocol", "TCP"), "port": group.host_ports.get(p["port"], p["port"])}
                             for p in ip["ports"]]
        shown_ip["type"] = ip.get("type", "Public")
        shown_ip["ip"] = PUBLIC_IP
        if group.dns_label:
            shown_ip["fqdn"] = f"{group.dns_label}.{group.location.replace(' ', '').lower()}.azurecontainer.io"
        props["ipAddress"] = shown_ip
    props["instanceView"] = {"state": _instance_state(group), "events": []}
    return {"id": _resource_id(subscription_id, resource_group, group.name), "name": group.name,
            "type": RESOURCE_TYPE, "location": group.location, "tags": dict(group.tags), "properties": props}


# -- handlers -------------------------------------------------------------------------------


def _find(request: ArmRequest) -> tuple[str, ContainerGroupResource] | None:
    path = request.path
    wanted = (path.names[0] if path.names else "").lower()
    for _sub, group, resource in request.backend.resources(path.subscription_id, path.resource_group, CONTAINER_GROUPS):
        if resource.name.lower() == wanted:
            return group.name, resource
    return None


def _get(request: ArmRequest) -> tuple[str, ContainerGroupResource]:
    found = _find(request)
    if found is None:
        name = request.path.names[0] if request.path.names else ""
        raise exceptions.resource_not_found(RESOURCE_TYPE, name, request.path.resource_group or "")
    group_name, resource = found
    request.backend.operations.settle_resource(_resource_id(request.path.subscription_id, group_name, resource.name))
    return found


#: what an in-place update may not change (Azure: "delete it first and then create a new one")
_FIXED = ("osType", "restartPolicy")


def _needs_recreate(old: ContainerGroupResource, new: ContainerGroupResource) -> str | None:
    for key in _FIXED:
        if (old.properties.get(key) or "Always") != (new.properties.get(key) or "Always"):
            return key
    if (old.cpu(), old.memory()) != (new.cpu(), new.memory()):
        return "CPU or memory"
    return None


@PROVIDER.operation("PUT", CONTAINER_GROUPS, ITEM, summary="container_groups.begin_create_or_update")
async def create_or_update(request: ArmRequest) -> ArmResponse:
    path = request.path
    name = path.name or ""
    location, props, tags = _validate(name, request.json())
    existing = _find(request)
    group_name = existing[0] if existing else (path.resource_group or "")
    old = existing[1] if existing else None
    group = ContainerGroupResource(name=old.name if old else name, location=location, properties=props, tags=tags,
                                   provisioning_state="Updating" if old else "Creating",
                                   host_ports=dict(old.host_ports) if old else {})
    if old is not None:
        changed = _needs_recreate(old, group)
        if changed:
            raise exceptions.ArmError(
                400, "InvalidContainerGroupUpdate",
                f"The updates on container group '{old.name}' are invalid. If you are going to update the os "
                f"type, restart policy, network profile, CPU, memory or GPU resources for a container group, "
                f"you must delete it first and then create a new one. (changed: {changed})")
    _check_quota(request, group, old)
    _check_dns_label(request, group, old)
    backend = request.backend
    # stopping and starting processes blocks: keep it off the server's event loop
    if old is not None:
        await run_in_threadpool(_stop_group, old)
    backend.add_resource(path.subscription_id, group_name, CONTAINER_GROUPS, group)
    work = await run_in_threadpool(_run_group, backend, group)

    def finished(error: exceptions.ArmError | None) -> None:
        with group.lock:
            group.provisioning_state = "Failed" if error else "Succeeded"
            group.instance_state = _instance_state(group)
            if error is not None and _pull_error(group) is None:  # a scripted failure: nothing keeps running
                _stop_group(group)
                group.instance_state = "Failed"
        backend.save()

    resource_id = _resource_id(path.subscription_id, group_name, group.name)
    operation = backend.operations.begin(
        request, resource_type=RESOURCE_TYPE, resource_id=resource_id, location=location,
        operation=UPDATE if old else CREATE, work=work, on_finish=finished,
        result=lambda: group_json(path.subscription_id, group_name, group))
    return backend.operations.accepted(request, operation, group_json(path.subscription_id, group_name, group),
                                       status=200 if old else 201)


@PROVIDER.operation("PATCH", CONTAINER_GROUPS, ITEM, summary="container_groups.update")
async def update_tags(request: ArmRequest) -> dict[str, Any]:
    group_name, group = _get(request)
    body = request.json() or {}
    if not isinstance(body, dict) or not isinstance(body.get("tags", {}), dict):
        raise exceptions.invalid_request_content("PATCH takes {\"tags\": {...}}")
    group.tags = {str(k): str(v) for k, v in (body.get("tags") or {}).items()}
    request.backend.save()
    return group_json(request.path.subscription_id, group_name, group)


@PROVIDER.operation("GET", CONTAINER_GROUPS, ITEM, summary="container_groups.get")
async def get_group(request: ArmRequest) -> dict[str, Any]:
    group_name, group = _get(request)
    return group_json(request.path.subscription_id, group_name, group)


@PROVIDER.operation("GET", CONTAINER_GROUPS, COLLECTION,
                    summary="container_groups.list, container_groups.list_by_resource_group")
async def list_groups(request: ArmRequest) -> dict[str, Any]:
    path = request.path
    found = request.backend.resources(path.subscription_id, path.resource_group, CONTAINER_GROUPS)
    shown = []
    for _s, group, resource in found:
        request.backend.operations.settle_resource(_resource_id(path.subscription_id, group.name, resource.name))
        shown.append(group_json(path.subscription_id, group.name, resource))
    return {"value": shown}


@PROVIDER.operation("DELETE", CONTAINER_GROUPS, ITEM, summary="container_groups.begin_delete")
async def delete_group(request: ArmRequest) -> ArmResponse:
    found = _find(request)
    if found is None:
        return ArmResponse(None, status=204)
    group_name, group = found
    path = request.path
    backend = request.backend
    group.provisioning_state = "Deleting"
    await run_in_threadpool(_stop_group, group)

    def finished(error: exceptions.ArmError | None) -> None:
        if error is None:
            backend.remove_resource(path.subscription_id, group_name, CONTAINER_GROUPS, group.name)
        else:
            group.provisioning_state = "Failed"
            backend.save()

    operation = backend.operations.begin(
        request, resource_type=RESOURCE_TYPE, resource_id=_resource_id(path.subscription_id, group_name, group.name),
        location=group.location, operation=DELETE, on_finish=finished)
    return backend.operations.accepted(request, operation, None, status=202)


async def _action(request: ArmRequest, action: str) -> ArmResponse:
    group_name, group = _get(request)
    backend = request.backend
    if group.provisioning_state not in ("Succeeded", "Failed"):
        raise exceptions.conflict(f"The container group '{group.name}' is {group.provisioning_state}; "
                                  f"{action} it once its operation has finished.")
    work = await run_in_threadpool(_run_group, backend, group)
    backend.save()

    def finished(error: exceptions.ArmError | None) -> None:
        group.instance_state = _instance_state(group)
        backend.save()

    operation = backend.operations.begin(
        request, resource_type=RESOURCE_TYPE,
        resource_id=_resource_id(request.path.subscription_id, group_name, group.name) + f"/{action}",
        location=group.location, operation=action, work=work, on_finish=finished)
    return backend.operations.accepted(request, operation, None, status=204 if action == "restart" else 202)


@PROVIDER.operation("POST", CONTAINER_GROUPS, "restart", summary="container_groups.begin_restart")
async def restart_group(request: ArmRequest) -> ArmResponse:
    return await _action(request, "restart")


@PROVIDER.operation("POST", CONTAINER_GROUPS, "start", summary="container_groups.begin_start")
async def start_group(request: ArmRequest) -> ArmResponse:
    return await _action(request, "start")


@PROVIDER.operation("POST", CONTAINER_GROUPS, "stop", summary="container_groups.stop")
async def stop_group(request: ArmRequest) -> ArmResponse:
    _group_name, group = _get(request)
    await run_in_threadpool(_stop_group, group)
    group.instance_state = "Stopped"
    request.backend.save()
    return ArmResponse(None, status=204)


@PROVIDER.operation("GET", "containerGroups/containers/logs", COLLECTION, summary="containers.list_logs")
async def container_logs(request: ArmRequest) -> dict[str, Any]:
    _group_name, group = _get(request)
    container = request.path.names[1] if len(request.path.names) > 1 else ""
    if container not in {c["name"] for c in group.containers}:
        raise exceptions.ArmError(404, "ContainerNotFound",
                                  f"The container '{container}' is not found in container group '{group.name}'.")
    runtime = group.running.runtimes.get(container) if group.running is not None else None
    text = runtime.logs() if runtime is not None else ""
    lines = text.splitlines(keepends=True)[-LOG_LINES_KEPT:]
    tail = request.query.get("tail")
    if tail is not None:
        if not tail.isdigit():
            raise exceptions.invalid_parameter_message(f"The value '{tail[:20]}' of 'tail' must be a whole number.")
        lines = lines[-int(tail):] if int(tail) else []
    return {"content": "".join(lines)}


register_status_routes(PROVIDER, summary="container_groups.begin_create_or_update, container_groups.begin_delete, "
                                         "container_groups.begin_restart, container_groups.begin_start")

__all__ = ["PROVIDER", "ContainerGroupResource", "group_json"]
