"""Deploying a model as an IoT Edge module: package, apply the manifest, follow the agent.

``start``/``update`` build the scoring module image (:mod:`.images`), push it to the workspace's
registry, generate the manifest (:mod:`.manifest`) and apply it to the device with
azure-iot-hub's ``apply_configuration_on_edge_device``; then they wait until the edge agent
reports it: ``lastDesiredVersion`` caught up with the ``$edgeAgent`` desired ``$version``,
``lastDesiredStatus`` 200 and the scoring module ``running`` with the new image. The state
of a service is read the same way (:func:`status`): ``Healthy`` (module running),
``Transitioning`` (not applied yet, or starting), ``Unhealthy`` (in back-off),
``Failed`` (refused deployment, or the module failed and stays down).
"""

from __future__ import annotations

import json
import time

import attrs
from typing import Any, Callable

from aml_core.errors import AmlError, InvalidConfig, NotFound, ProvisioningFailed
from aml_core.records import DeploymentSpec, ServiceRecord, utcnow

from aml_provider_iotedge import hub, images, manifest

KIND = "iotedge"
_POLL = 0.2


@attrs.frozen
class Target:
    """Where a deployed service runs: enough to find it again from its stored record."""

    device_id: str
    module: str
    compute_target_name: str | None = None
    startup_timeout: float = 300.0

    @classmethod
    def of(cls, config: Any) -> "Target":
        return cls(config.device_id, config.aml_module.name, config.compute_target_name, config.startup_timeout)

    @classmethod
    def from_record(cls, service: ServiceRecord) -> "Target":
        d = service.details
        return cls(d["device_id"], d["module"], d.get("compute_target_name"))


def _noop(_text: str) -> None:
    pass


def _hub_errors(what: str) -> Any:
    """azure-iot-hub's msrest errors → :mod:`aml_core.errors`, the hub's message kept."""
    from contextlib import contextmanager

    from msrest.exceptions import ClientRequestError, HttpOperationError

    @contextmanager
    def translating():
        try:
            yield
        except HttpOperationError as exc:
            status = exc.response.status_code if exc.response is not None else None
            text = exc.response.text[:500] if exc.response is not None else str(exc)
            if status == 401:
                from aml_core.errors import AuthError

                raise AuthError(f"{what}: the IoT hub refused the credentials ({text}). Check "
                                f"{hub.ENV_CONNECTION_STRING} or the hub's keys.") from exc
            if status == 404:
                raise NotFound(f"{what}: {text}") from exc
            raise ProvisioningFailed(f"{what}: the IoT hub answered {status}: {text}") from exc
        except ClientRequestError as exc:
            raise ProvisioningFailed(f"{what}: the IoT hub is unreachable ({exc}). Is the emulator running?") from exc

    return translating()


def _registries(config: Any, workspace_registry: Any) -> list[tuple[str, str, str]]:
    found = [(workspace_registry.address, workspace_registry.username or "", workspace_registry.password or "")]
    found += [(c.location, c.user, c.password) for c in config.acr_credentials]
    return found


def _apply(config: Any, content: dict[str, Any]) -> int:
    """Apply ``content`` to the device; returns the ``$edgeAgent`` desired version it got."""
    from azure.iot.hub.models import ConfigurationContent

    registry = hub.registry_manager(config)
    with _hub_errors(f"Deploying to IoT Edge device {config.device_id!r}"):
        device = registry.get_device(config.device_id)
        if not (device.capabilities and device.capabilities.iot_edge):
            raise InvalidConfig(f"Device {config.device_id!r} is not an IoT Edge device; create it with "
                                f"iot_edge=True (or `aml iot add-edge-device {config.device_id}` on the emulator).")
        hub.configuration_manager(config).apply_configuration_on_edge_device(
            config.device_id, ConfigurationContent(modules_content=content))
        twin = registry.get_module_twin(config.device_id, "$edgeAgent")
    return int(twin.properties.desired["$version"])


def _agent_report(config: Any) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """The ``$edgeAgent`` twin's desired and reported properties, and the scoring module's own report."""
    from msrest.exceptions import HttpOperationError

    registry = hub.registry_manager(config)
    with _hub_errors(f"Reading the edge agent of {config.device_id!r}"):
        twin = registry.get_module_twin(config.device_id, "$edgeAgent")
        try:
            module = registry.get_module_twin(config.device_id, config.module).properties.reported or {}
        except HttpOperationError:  # the module's identity is not created yet: nothing reported
            module = {}
    return twin.properties.desired or {}, twin.properties.reported or {}, module


def evaluate(config: Any, desired: dict[str, Any], reported: dict[str, Any], image: str | None,
             module_report: dict[str, Any] | None = None, revision: str | None = None) -> tuple[str, str | None]:
    """``(state, error)`` of the scoring module from the agent's twin and the module's report
    (``amlModule.status`` ready for ``revision``: init() done and connected)."""
    name = config.module
    if reported.get("lastDesiredVersion") != desired.get("$version"):
        return "Transitioning", None
    status = reported.get("lastDesiredStatus") or {}
    if status.get("code") != 200:
        return "Failed", f"The edge agent refused the deployment ({status.get('code')}): {status.get('description')}"
    module = (reported.get("modules") or {}).get(name)
    if module is None or (image and (module.get("settings") or {}).get("image") != image):
        return "Transitioning", None
    runtime = module.get("runtimeStatus")
    if runtime == "running":
        ready = (module_report or {}).get("amlModule") or {}
        if revision is not None and (ready.get("status") != "ready" or ready.get("revision") != revision):
            return "Transitioning", None
        return "Healthy", None
    if runtime == "backoff":
        return "Unhealthy", f"Module {name!r} is in back-off: {module.get('statusDescription')}"
    if runtime in ("failed", "stopped"):
        return "Failed", f"Module {name!r} is {runtime} (exit code {module.get('exitCode')}): {module.get('statusDescription')}"
    return "Transitioning", None


def _wait(config: Any, image: str, version: int, revision: str,
          progress: Callable[[str], None]) -> tuple[str, str | None]:
    deadline = time.monotonic() + config.startup_timeout
    last = None
    while True:
        desired, reported, module_report = _agent_report(config)
        if int(desired.get("$version", 0)) > version:
            raise ProvisioningFailed(f"Another deployment replaced this one on device {config.device_id!r} "
                                     f"before it was applied.")
        state, error = evaluate(config, desired, reported, image, module_report, revision)
        if state != last:
            progress(f"Module {config.module!r} on {config.device_id!r}: {state}")
            last = state
        if state in ("Healthy", "Failed"):
            return state, error
        if time.monotonic() > deadline:
            return state, error or (f"Module {config.module!r} did not start within "
                                    f"{config.startup_timeout:.0f} s; see service.get_logs().")
        time.sleep(_POLL)


def _deploy(workspace: Any, spec: DeploymentSpec, revision: int, previous: ServiceRecord | None) -> ServiceRecord:
    config = spec.deployment_config
    progress = spec.progress or _noop
    spec.inference_config.validate_entry_script()
    progress(f"Packaging the scoring module for {spec.name!r}")
    image, registry = images.publish_scoring_module(workspace, f"{spec.name}-iot", f"r{revision}", spec.models,
                                                    spec.inference_config)
    content = manifest.build(config, image, _registries(config, registry), version=str(revision))
    progress(f"Applying the deployment to IoT Edge device {config.device_id!r} through {hub.hostname(config)}")
    version = _apply(config, content)
    state, error = _wait(Target.of(config), image, version, str(revision), progress)
    details = {"device_id": config.device_id, "hub": hub.hostname(config), "module": config.aml_module.name,
               "compute_target_name": config.compute_target_name,
               "image": image, "revision": revision, "desired_version": version}
    record = ServiceRecord(
        name=spec.name, kind=KIND, state=state, scoring_uri=None, models=tuple(m.id for m in spec.models),
        error=error, tags=dict(config.tags), properties=dict(config.properties), details=details,
        created_time=previous.created_time if previous else utcnow())
    if state != "Healthy":
        raise ProvisioningFailed(f"Deploying {spec.name!r} to IoT Edge device {config.device_id!r} failed: {error}. "
                                 f"See service.get_logs().", record=record)
    return record


def start(workspace: Any, spec: DeploymentSpec) -> ServiceRecord:
    return _deploy(workspace, spec, revision=1, previous=None)


def update(workspace: Any, service: ServiceRecord, spec: DeploymentSpec) -> ServiceRecord:
    """A new image and manifest for the same device; the agent replaces the module, and the
    edge hub keeps the messages queued for it meanwhile."""
    return _deploy(workspace, spec, revision=int(service.details.get("revision", 1)) + 1, previous=service)


def status(service: ServiceRecord) -> ServiceRecord:
    config = Target.from_record(service)
    try:
        desired, reported, _module = _agent_report(config)
    except AmlError as exc:
        return attrs.evolve(service, state="Unhealthy", error=str(exc))
    module = (reported.get("modules") or {}).get(config.module)
    if module is None and reported.get("lastDesiredVersion") == desired.get("$version"):
        return attrs.evolve(service, state="Failed",
                            error=f"Module {config.module!r} is no longer deployed on {config.device_id!r}.")
    state, error = evaluate(config, desired, reported, service.details.get("image"))
    return attrs.evolve(service, state=state, error=error)


def logs(service: ServiceRecord, num_lines: int, module: str | None = None) -> str:
    """A module's logs through the edge agent's ``GetModuleLogs`` direct method."""
    from azure.iot.hub.models import CloudToDeviceMethod

    config = Target.from_record(service)
    name = module or config.module
    request = CloudToDeviceMethod(method_name="GetModuleLogs", response_timeout_in_seconds=30, payload={
        "schemaVersion": "1.0", "items": [{"id": name, "filter": {"tail": num_lines}}],
        "encoding": "none", "contentType": "text"})
    with _hub_errors(f"Reading the logs of module {name!r} on {config.device_id!r}"):
        result = hub.registry_manager(config).invoke_device_module_method(config.device_id, "$edgeAgent", request)
    if result.status != 200:
        raise NotFound(f"The edge agent of {config.device_id!r} has no logs for module {name!r}: {result.payload}")
    return "".join(item.get("payload", "") for item in result.payload or [])


def send_test_message(service: ServiceRecord, data: Any, timeout: float = 30.0) -> Any:
    """Score ``data`` in the running module (its ``score`` direct method): the result is
    returned, and also sent on ``amlOutput`` through the deployment's routes."""
    from azure.iot.hub.models import CloudToDeviceMethod

    config = Target.from_record(service)
    payload = data if isinstance(data, (dict, list)) else json.loads(data) if isinstance(data, str) else data
    request = CloudToDeviceMethod(method_name="score", payload=payload, response_timeout_in_seconds=int(timeout))
    registry = hub.registry_manager(config)
    deadline = time.monotonic() + timeout
    while True:
        try:
            with _hub_errors(f"Sending a test message to module {config.module!r}"):
                result = registry.invoke_device_module_method(config.device_id, config.module, request)
            break
        except NotFound as exc:
            # a module that has just started may not have connected to its edge hub yet
            if "DeviceNotOnline" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(_POLL)
    if result.status != 200:
        from aml_core.errors import WebserviceException

        raise WebserviceException(f"Module {config.module!r} failed to score the test message "
                                  f"({result.status}): {result.payload}. See service.get_logs().")
    return result.payload


def delete(service: ServiceRecord) -> bool:
    """Remove the modules (and routes) from the device: a deployment of the system modules only."""
    config = Target.from_record(service)
    registry = hub.registry_manager(config)
    try:
        with _hub_errors(f"Removing {service.name!r} from {config.device_id!r}"):
            registry.get_device(config.device_id)
    except NotFound:
        return False
    _apply(config, manifest.empty([]))
    return True
