"""The state of one emulated IoT hub: identities, twins, configurations, device-to-cloud events.

Shapes follow azure-iot-hub 2.7.0's ``protocol/models`` (Device, Module, Twin, Configuration).
Each hub is kept in ``<state>/hub.json`` (0600: it holds every key) rewritten atomically on
each change, and its device-to-cloud messages in ``<state>/events.jsonl``, so a restart loses
neither. Every method is thread-safe: the REST server and the MQTT broker run on their own
threads.
"""

from __future__ import annotations

import copy
import datetime as _dt
import json
import os
import threading
import uuid
from pathlib import Path
from typing import Any, Callable

import attrs

from aml_emulator.iothub import auth
from aml_emulator.iothub.exceptions import HubError, device_not_found, module_not_found, precondition_failed

STATE_FORMAT = 1

#: the shared access policies every hub starts with, and their rights (as Azure creates them)
DEFAULT_POLICIES = {
    "iothubowner": "RegistryWrite, ServiceConnect, DeviceConnect",
    "service": "ServiceConnect",
    "device": "DeviceConnect",
    "registryRead": "RegistryRead",
    "registryReadWrite": "RegistryWrite",
}


def utcnow() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f") + "Z"


def _etag() -> str:
    return uuid.uuid4().hex[:12]


def merge_patch(target: dict[str, Any], patch: dict[str, Any]) -> None:
    """Apply a twin patch: objects merge recursively, ``null`` removes a property."""
    for key, value in patch.items():
        if key.startswith("$"):
            continue
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            merge_patch(target[key], value)
        elif isinstance(value, dict):
            target[key] = {}
            merge_patch(target[key], value)
        else:
            target[key] = value


@attrs.define
class Policy:
    name: str
    rights: str
    primary_key: str = attrs.field(factory=auth.new_key, repr=False)
    secondary_key: str = attrs.field(factory=auth.new_key, repr=False)

    def to_json(self) -> dict[str, Any]:
        return {"keyName": self.name, "rights": self.rights, "primaryKey": self.primary_key,
                "secondaryKey": self.secondary_key}


@attrs.define
class Twin:
    """Desired and reported properties with their versions; ``etag`` changes on every write."""

    tags: dict[str, Any] = attrs.field(factory=dict)
    desired: dict[str, Any] = attrs.field(factory=dict)
    reported: dict[str, Any] = attrs.field(factory=dict)
    desired_version: int = 1
    reported_version: int = 1
    version: int = 1
    etag: str = attrs.field(factory=_etag)
    last_updated: str = attrs.field(factory=utcnow)

    def touch(self) -> None:
        self.version += 1
        self.etag = _etag()
        self.last_updated = utcnow()

    def properties(self) -> dict[str, Any]:
        def section(values: dict[str, Any], version: int) -> dict[str, Any]:
            return {**copy.deepcopy(values), "$metadata": {"$lastUpdated": self.last_updated}, "$version": version}

        return {"desired": section(self.desired, self.desired_version),
                "reported": section(self.reported, self.reported_version)}


@attrs.define
class Identity:
    """A device or a module: keys, status, generation, its twin."""

    device_id: str
    module_id: str | None = None
    primary_key: str = attrs.field(factory=auth.new_key, repr=False)
    secondary_key: str = attrs.field(factory=auth.new_key, repr=False)
    status: str = "enabled"
    status_reason: str | None = None
    edge: bool = False
    managed_by: str | None = None
    generation_id: str = attrs.field(factory=lambda: uuid.uuid4().hex[:18])
    etag: str = attrs.field(factory=_etag)
    connected: bool = False
    last_activity: str = "0001-01-01T00:00:00Z"
    twin: Twin = attrs.field(factory=Twin)
    modules: dict[str, "Identity"] = attrs.field(factory=dict)

    @property
    def keys(self) -> tuple[str, str]:
        return self.primary_key, self.secondary_key

    def _authentication(self) -> dict[str, Any]:
        return {"type": "sas", "symmetricKey": {"primaryKey": self.primary_key, "secondaryKey": self.secondary_key},
                "x509Thumbprint": {"primaryThumbprint": None, "secondaryThumbprint": None}}

    def to_json(self) -> dict[str, Any]:
        state = "Connected" if self.connected else "Disconnected"
        if self.module_id is not None:
            return {"moduleId": self.module_id, "deviceId": self.device_id, "managedBy": self.managed_by,
                    "generationId": self.generation_id, "etag": self.etag, "connectionState": state,
                    "connectionStateUpdatedTime": self.last_activity, "lastActivityTime": self.last_activity,
                    "cloudToDeviceMessageCount": 0, "authentication": self._authentication()}
        return {"deviceId": self.device_id, "generationId": self.generation_id, "etag": self.etag,
                "connectionState": state, "status": self.status, "statusReason": self.status_reason,
                "connectionStateUpdatedTime": self.last_activity, "statusUpdatedTime": self.last_activity,
                "lastActivityTime": self.last_activity, "cloudToDeviceMessageCount": 0,
                "authentication": self._authentication(), "capabilities": {"iotEdge": self.edge}}

    def twin_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"deviceId": self.device_id, "etag": self.twin.etag, "version": self.twin.version,
                                "tags": copy.deepcopy(self.twin.tags), "properties": self.twin.properties(),
                                "status": self.status, "connectionState": "Connected" if self.connected else "Disconnected",
                                "lastActivityTime": self.last_activity, "authenticationType": "sas",
                                "cloudToDeviceMessageCount": 0}
        if self.module_id is not None:
            body["moduleId"] = self.module_id
        else:
            body["capabilities"] = {"iotEdge": self.edge}
        return body

    def to_state(self) -> dict[str, Any]:
        state = attrs.asdict(self, recurse=True, filter=lambda a, _v: a.name not in ("connected", "modules"))
        state["modules"] = {mid: module.to_state() for mid, module in self.modules.items()}
        return state

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> "Identity":
        fields = dict(state)
        fields["twin"] = Twin(**fields.get("twin", {}))
        fields["modules"] = {mid: cls.from_state(m) for mid, m in (fields.get("modules") or {}).items()}
        return cls(**fields)


#: ``(device_id, module_id or None, patch including $version)`` called after desired properties change
DesiredListener = Callable[[str, "str | None", dict[str, Any]], None]


class Hub:
    """One IoT hub's registry, twins, configurations and events, persisted under ``directory``."""

    def __init__(self, name: str, directory: Path, *, hostname: str = "") -> None:
        self.name = name
        self.directory = Path(directory)
        self.hostname = hostname
        self.policies: dict[str, Policy] = {n: Policy(n, r) for n, r in DEFAULT_POLICIES.items()}
        self.devices: dict[str, Identity] = {}
        self.configurations: dict[str, dict[str, Any]] = {}
        self.events: list[dict[str, Any]] = []
        self.lock = threading.RLock()
        self.events_changed = threading.Condition(self.lock)
        self.desired_listeners: list[DesiredListener] = []
        #: ``(device, module) -> f(method name, payload) -> (status, payload)``: the direct
        #: methods emulated parts (edge agents) answer
        #: ``device id -> running edge device``, set by the service that runs this hub
        self.add_edge_device: Callable[[str], Any] | None = None
        self.method_handlers: dict[tuple[str, str | None], Callable[[str, Any], tuple[int, Any]]] = {}

    # -- persistence ----------------------------------------------------------------------

    @property
    def _state_path(self) -> Path:
        return self.directory / "hub.json"

    @property
    def _events_path(self) -> Path:
        return self.directory / "events.jsonl"

    @classmethod
    def load_or_create(cls, name: str, directory: Path) -> "Hub":
        hub = cls(name, directory)
        directory.mkdir(parents=True, exist_ok=True)
        os.chmod(directory, 0o700)
        if hub._state_path.exists():
            state = json.loads(hub._state_path.read_text(encoding="utf-8"))
            if state.get("format", 0) > STATE_FORMAT:
                raise HubError(500, "InternalServerError",
                               f"{hub._state_path} was written by a newer aml-emulator; upgrade it.")
            hub.hostname = state.get("hostname", "")
            hub.policies = {p["name"]: Policy(**p) for p in state["policies"]}
            hub.devices = {d: Identity.from_state(s) for d, s in state["devices"].items()}
            hub.configurations = state.get("configurations", {})
        if hub._events_path.exists():
            for line in hub._events_path.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    hub.events.append(json.loads(line))
        hub.save()
        return hub

    def save(self) -> None:
        with self.lock:
            state = {"format": STATE_FORMAT, "name": self.name, "hostname": self.hostname,
                     "policies": [attrs.asdict(p) for p in self.policies.values()],
                     "devices": {d: i.to_state() for d, i in self.devices.items()},
                     "configurations": self.configurations}
            tmp = self._state_path.with_name(".hub.json.tmp")
            tmp.unlink(missing_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(state, handle)
            os.replace(tmp, self._state_path)

    # -- keys -------------------------------------------------------------------------------

    def connection_string(self, policy: str = "iothubowner") -> str:
        p = self.policies[policy]
        return f"HostName={self.hostname};SharedAccessKeyName={p.name};SharedAccessKey={p.primary_key}"

    def device_connection_string(self, device_id: str, module_id: str | None = None) -> str:
        identity = self.identity(device_id, module_id)
        module = f";ModuleId={module_id}" if module_id else ""
        return f"HostName={self.hostname};DeviceId={device_id}{module};SharedAccessKey={identity.primary_key}"

    def regenerate_policy_key(self, policy: str, which: str) -> Policy:
        with self.lock:
            p = self.policies[policy]
            if which == "primary":
                p.primary_key = auth.new_key()
            else:
                p.secondary_key = auth.new_key()
            self.save()
            return p

    # -- identities ---------------------------------------------------------------------------

    def identity(self, device_id: str, module_id: str | None = None) -> Identity:
        with self.lock:
            device = self.devices.get(device_id)
            if device is None:
                raise device_not_found(device_id, self.name)
            if module_id is None:
                return device
            module = device.modules.get(module_id)
            if module is None:
                raise module_not_found(device_id, module_id, self.name)
            return module

    def put_identity(self, device_id: str, module_id: str | None, body: dict[str, Any], if_match: str | None) -> tuple[Identity, bool]:
        """Create or update a device/module from a REST body; ``(identity, created)``."""
        with self.lock:
            try:
                existing: Identity | None = self.identity(device_id, module_id)
            except HubError:
                existing = None
                if module_id is not None:
                    self.identity(device_id)  # the device must exist for its modules
            _check_etag(existing.etag if existing else None, if_match, "device" if module_id is None else "module")
            symmetric = ((body.get("authentication") or {}).get("symmetricKey") or {})
            identity = existing or Identity(device_id=device_id, module_id=module_id)
            identity.primary_key = symmetric.get("primaryKey") or identity.primary_key
            identity.secondary_key = symmetric.get("secondaryKey") or identity.secondary_key
            for key in (identity.primary_key, identity.secondary_key):
                _check_key(key)
            if module_id is None:
                identity.status = body.get("status") or identity.status
                identity.status_reason = body.get("statusReason", identity.status_reason)
                identity.edge = bool((body.get("capabilities") or {}).get("iotEdge", identity.edge))
                if identity.edge and existing is None:
                    # IoT Hub creates the two system modules with every edge device
                    for system in ("$edgeAgent", "$edgeHub"):
                        identity.modules[system] = Identity(device_id=device_id, module_id=system)
                self.devices[device_id] = identity
            else:
                identity.managed_by = body.get("managedBy", identity.managed_by)
                self.devices[device_id].modules[module_id] = identity
            identity.etag = _etag()
            self.save()
            return identity, existing is None

    def delete_identity(self, device_id: str, module_id: str | None, if_match: str | None) -> None:
        with self.lock:
            identity = self.identity(device_id, module_id)
            _check_etag(identity.etag, if_match, "device" if module_id is None else "module")
            if module_id is None:
                del self.devices[device_id]
            else:
                del self.devices[device_id].modules[module_id]
            self.save()

    # -- twins -------------------------------------------------------------------------------------

    def update_twin(self, device_id: str, module_id: str | None, body: dict[str, Any], if_match: str | None,
                    *, replace: bool) -> Identity:
        """PUT (``replace``) or PATCH a twin's tags and desired properties from the service side."""
        with self.lock:
            identity = self.identity(device_id, module_id)
            twin = identity.twin
            _check_etag(twin.etag, if_match, "twin")
            desired = ((body.get("properties") or {}).get("desired"))
            if replace:
                twin.tags = copy.deepcopy(body.get("tags") or {})
            elif body.get("tags"):
                merge_patch(twin.tags, body["tags"])
            patch: dict[str, Any] | None = None
            if desired is not None:
                if replace:
                    twin.desired = {}
                    merge_patch(twin.desired, desired)
                    patch = copy.deepcopy(twin.desired)
                else:
                    merge_patch(twin.desired, desired)
                    patch = {k: v for k, v in desired.items() if not k.startswith("$")}
                twin.desired_version += 1
            twin.touch()
            self.save()
        if patch is not None:
            self._notify_desired(device_id, module_id, {**patch, "$version": twin.desired_version})
        return identity

    def set_desired(self, device_id: str, module_id: str, desired: dict[str, Any]) -> None:
        """Replace one module twin's desired properties (``applyConfigurationContent``)."""
        with self.lock:
            twin = self.identity(device_id, module_id).twin
            twin.desired = {}
            merge_patch(twin.desired, desired)
            twin.desired_version += 1
            twin.touch()
            version = twin.desired_version
            full = copy.deepcopy(twin.desired)
            self.save()
        self._notify_desired(device_id, module_id, {**full, "$version": version})

    def patch_reported(self, device_id: str, module_id: str | None, patch: dict[str, Any]) -> int:
        """A device-side reported-properties patch; returns the new reported version."""
        with self.lock:
            twin = self.identity(device_id, module_id).twin
            merge_patch(twin.reported, patch)
            twin.reported_version += 1
            twin.touch()
            self.save()
            return twin.reported_version

    def _notify_desired(self, device_id: str, module_id: str | None, patch: dict[str, Any]) -> None:
        for listener in list(self.desired_listeners):
            listener(device_id, module_id, patch)

    # -- configurations ----------------------------------------------------------------------

    def put_configuration(self, config_id: str, body: dict[str, Any], if_match: str | None) -> tuple[dict[str, Any], bool]:
        with self.lock:
            existing = self.configurations.get(config_id)
            _check_etag(existing["etag"] if existing else None, if_match, "configuration")
            now = utcnow()
            config = {
                "id": config_id, "schemaVersion": body.get("schemaVersion") or "1.0",
                "labels": body.get("labels") or {}, "content": body.get("content") or {},
                "targetCondition": body.get("targetCondition") or "", "priority": body.get("priority") or 0,
                "createdTimeUtc": existing["createdTimeUtc"] if existing else now, "lastUpdatedTimeUtc": now,
                "systemMetrics": {"results": {}, "queries": {}}, "metrics": body.get("metrics") or {"results": {}, "queries": {}},
                "etag": _etag(),
            }
            self.configurations[config_id] = config
            self.save()
            return copy.deepcopy(config), existing is None

    def configuration(self, config_id: str) -> dict[str, Any]:
        with self.lock:
            if config_id not in self.configurations:
                raise HubError(404, "ConfigurationNotFound", f"Configuration {config_id} not found on IoT hub {self.name}.")
            return copy.deepcopy(self.configurations[config_id])

    def delete_configuration(self, config_id: str, if_match: str | None) -> None:
        with self.lock:
            config = self.configuration(config_id)
            _check_etag(config["etag"], if_match, "configuration")
            del self.configurations[config_id]
            self.save()

    def apply_configuration_content(self, device_id: str, content: dict[str, Any]) -> None:
        """Write each ``modulesContent`` entry into that module twin's desired properties,
        creating the user modules' identities on the edge device as IoT Hub does."""
        modules = content.get("modulesContent") or content.get("moduleContent")
        with self.lock:
            device = self.identity(device_id)
            if not device.edge:
                raise HubError(400, "ArgumentInvalid",
                               f"Device {device_id} is not an IoT Edge device; create it with capabilities.iotEdge=true.")
            if not isinstance(modules, dict) or not modules:
                raise HubError(400, "ArgumentInvalid",
                               "The configuration content has no modulesContent; every edge deployment needs "
                               "$edgeAgent and $edgeHub entries.")
            missing = [m for m in ("$edgeAgent", "$edgeHub") if m not in modules]
            if missing:
                raise HubError(400, "ArgumentInvalid",
                               f"The configuration content lacks {' and '.join(missing)}; every IoT Edge deployment "
                               f"needs both $edgeAgent and $edgeHub under modulesContent.")
            for module_id, section in modules.items():
                if not isinstance(section, dict) or not isinstance(section.get("properties.desired"), dict):
                    raise HubError(400, "ArgumentInvalid",
                                   f"modulesContent.{module_id} must be an object with a 'properties.desired' object.")
            agent = modules.get("$edgeAgent", {}).get("properties.desired", {})
            wanted = set((agent.get("modules") or {}).keys()) | {"$edgeAgent", "$edgeHub"}
            for module_id in wanted | set(modules):
                if module_id not in device.modules:
                    device.modules[module_id] = Identity(device_id=device_id, module_id=module_id,
                                                         managed_by="IotEdge")
            self.save()
        for module_id, section in modules.items():
            self.set_desired(device_id, module_id, section["properties.desired"])

    # -- connection state and events -----------------------------------------------------------

    def set_connected(self, device_id: str, module_id: str | None, connected: bool) -> None:
        with self.lock:
            try:
                identity = self.identity(device_id, module_id)
            except HubError:
                return
            identity.connected = connected
            identity.last_activity = utcnow()

    def add_event(self, device_id: str, module_id: str | None, body: bytes, properties: dict[str, str],
                  system: dict[str, str]) -> dict[str, Any]:
        """Store one device-to-cloud message on the built-in events endpoint."""
        with self.lock:
            event = {"sequenceNumber": len(self.events), "enqueuedTimeUtc": utcnow(),
                     "deviceId": device_id, "moduleId": module_id,
                     "body": body.decode("utf-8", "replace"), "properties": dict(properties),
                     "systemProperties": {**system, "iothub-connection-device-id": device_id,
                                          **({"iothub-connection-module-id": module_id} if module_id else {})}}
            self.events.append(event)
            with open(self._events_path, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(event) + "\n")
            self.events_changed.notify_all()
            return event

    def read_events(self, start: int = 0, *, timeout: float = 0.0) -> list[dict[str, Any]]:
        """Events from sequence number ``start`` on; wait up to ``timeout`` seconds for one."""
        with self.events_changed:
            if len(self.events) <= start and timeout > 0:
                self.events_changed.wait_for(lambda: len(self.events) > start, timeout)
            return copy.deepcopy(self.events[start:])


def _check_etag(current: str | None, if_match: str | None, what: str) -> None:
    wanted = (if_match or "").strip().strip('"')
    if wanted in ("", "*"):
        return
    if current is None or wanted != current:
        raise precondition_failed(what)


def _check_key(key: str) -> None:
    import base64
    import binascii

    try:
        raw = base64.b64decode(key, validate=True)
    except (binascii.Error, ValueError):
        raise HubError(400, "ArgumentInvalid", "The symmetric key is not valid base64.") from None
    if not 16 <= len(raw) <= 64:
        raise HubError(400, "ArgumentInvalid", "The symmetric key must be 16 to 64 bytes once base64-decoded.")
