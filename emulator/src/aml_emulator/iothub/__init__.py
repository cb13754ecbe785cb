"""Emulated Azure IoT hubs that the real azure-iot-hub and azure-iot-device SDKs work against.

>>> service = IotHubService(state_dir, ca=ca)        # doctest: +SKIP
>>> hub = service.create_hub("myhub")                # doctest: +SKIP
>>> hub.connection_string()                          # HostName=127.x.y.z;SharedAccessKeyName=iothubowner;...

Each hub gets a loopback address of its own (``127.x.y.z``) and serves, over TLS signed by
the emulator's CA, the service REST API on port 443 and device MQTT on port 8883, the ports
the SDKs hard-code (azure-iot-device always connects to 8883). The address is its
``HostName``, so connection strings and SAS tokens are built exactly as for Azure. Binding
443 and 8883 needs root or ``CAP_NET_BIND_SERVICE``; without it :meth:`create_hub` fails
with a message saying so.

Hubs, identities, twins, configurations and device-to-cloud messages are kept under
``state_dir/<hub>/`` and come back, on the same address when it is free, after a restart.
Clients must trust the CA: ``REQUESTS_CA_BUNDLE=<ca.pem>`` for azure-iot-hub,
``server_verification_cert=<PEM text>`` for azure-iot-device.
"""

from __future__ import annotations

import json
import logging
import time
import re
import shutil
import threading
from pathlib import Path
from typing import Any, Callable

from aml_emulator._http import BackgroundServer
from aml_emulator.arm.tls import CertificateAuthority
from aml_emulator.iothub.addresses import allocate
from aml_emulator.iothub.broker import BrokerThread
from aml_emulator.iothub.exceptions import HubError
from aml_emulator.iothub.gateway import HubGateway
from aml_emulator.iothub.models import Hub
from aml_emulator.iothub.rest import HubRestApp

__all__ = ["HubError", "IotHubService", "RunningHub", "REST_PORT", "MQTT_PORT"]

log = logging.getLogger(__name__)

REST_PORT = 443
MQTT_PORT = 8883
_HUB_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]{1,48}[A-Za-z0-9]$")


class RunningHub:
    """One hub with its REST and MQTT endpoints."""

    def __init__(self, hub: Hub, rest: BackgroundServer, broker: BrokerThread, gateway: HubGateway,
                 service: "IotHubService") -> None:
        self.hub = hub
        self.rest = rest
        self.broker = broker
        self.gateway = gateway
        self.service = service
        self.edge_devices: dict[str, Any] = {}
        hub.add_edge_device = self.add_edge_device

    @property
    def _edge_file(self) -> Path:
        return self.hub.directory / "edge_devices.json"

    def add_edge_device(self, device_id: str) -> Any:
        """Create the IoT Edge device ``device_id`` if it is not registered, and run it: an
        :class:`~aml_emulator.iothub.edge.EdgeDevice` whose agent applies what is deployed to
        it. Kept across restarts."""
        from aml_emulator.iothub.edge import EdgeDevice

        if device_id in self.edge_devices:
            return self.edge_devices[device_id]
        try:
            identity = self.hub.identity(device_id)
        except HubError:
            identity, _created = self.hub.put_identity(device_id, None, {"capabilities": {"iotEdge": True}}, None)
        if not identity.edge:
            raise HubError(400, "ArgumentInvalid",
                           f"Device {device_id} exists and is not an IoT Edge device; delete it or use another id.")
        known = self._known_edge_devices()
        device = EdgeDevice(self.hub, device_id, state_dir=self.hub.directory / "edge" / device_id,
                            ca=self.service.ca, address=known.get(device_id, ""), **self.service.edge_options)
        device.start()
        self.edge_devices[device_id] = device
        known[device_id] = device.address
        self._edge_file.write_text(json.dumps(known), encoding="utf-8")
        return device

    def edge_device(self, device_id: str) -> Any:
        try:
            return self.edge_devices[device_id]
        except KeyError:
            raise HubError(404, "DeviceNotFound", f"No emulated edge device {device_id} runs on hub {self.name}; "
                                                  f"add it with add_edge_device().") from None

    def _known_edge_devices(self) -> dict[str, str]:
        if self._edge_file.exists():
            return json.loads(self._edge_file.read_text(encoding="utf-8"))
        return {}

    def start_known_edge_devices(self) -> None:
        for device_id in self._known_edge_devices():
            try:
                self.add_edge_device(device_id)
            except HubError as exc:
                log.warning("edge device %s of hub %s did not start again: %s", device_id, self.name, exc.message)

    @property
    def name(self) -> str:
        return self.hub.name

    @property
    def hostname(self) -> str:
        return self.hub.hostname

    def connection_string(self, policy: str = "iothubowner") -> str:
        return self.hub.connection_string(policy)

    def device_connection_string(self, device_id: str, module_id: str | None = None) -> str:
        return self.hub.device_connection_string(device_id, module_id)

    def send_c2d(self, device_id: str, body: bytes | str, properties: dict[str, str] | None = None,
                 message_id: str | None = None) -> None:
        """Send a cloud-to-device message (what ``IoTHubRegistryManager.send_c2d_message``
        does over AMQP, which the emulator does not speak)."""
        data = body.encode() if isinstance(body, str) else body
        self.gateway.send_c2d(device_id, data, properties, message_id)

    def events(self, start: int = 0, *, timeout: float = 0.0) -> list[dict[str, Any]]:
        """Device-to-cloud messages from sequence number ``start`` on (waits up to ``timeout`` s)."""
        return self.hub.read_events(start, timeout=timeout)

    def stop(self) -> None:
        for device in self.edge_devices.values():
            device.stop()
        self.edge_devices.clear()
        self.broker.stop()
        # idle keep-alive TLS clients never answer the close handshake: do not wait on them
        uvicorn_server = self.rest._server  # noqa: SLF001 - same package
        uvicorn_server.should_exit = True
        uvicorn_server.force_exit = True
        self.rest.stop(timeout=5)

    def __repr__(self) -> str:
        return f"RunningHub({self.name!r}, hostname={self.hostname!r})"


class IotHubService:
    """Every emulated hub, kept under ``state_dir``; hubs found there start with the service."""

    def __init__(self, state_dir: str | Path, *, ca: CertificateAuthority, clock: Callable[[], float] | None = None,
                 backoff_base: float | None = None, engine_factory: Callable[..., Any] | None = None) -> None:
        self.state_dir = Path(state_dir)
        self.ca = ca
        #: what every edge device gets: the clock of restart back-off and message TTLs, the
        #: first back-off delay, and what runs modules (``credentials -> Engine``)
        self.edge_options: dict[str, Any] = {"clock": clock or time.monotonic}
        if backoff_base is not None:
            self.edge_options["backoff_base"] = backoff_base
        if engine_factory is not None:
            self.edge_options["engine_factory"] = engine_factory
        self.hubs: dict[str, RunningHub] = {}
        self._lock = threading.RLock()

    @property
    def url(self) -> str:
        return ", ".join(f"https://{h.hostname}" for h in self.hubs.values()) or "(no hubs)"

    @property
    def ca_bundle(self) -> Path:
        return self.ca.cert_path

    def start(self) -> "IotHubService":
        self.state_dir.mkdir(parents=True, exist_ok=True)
        for directory in sorted(self.state_dir.iterdir()):
            if (directory / "hub.json").exists():
                self._start_hub(Hub.load_or_create(directory.name, directory)).start_known_edge_devices()
        return self

    def stop(self) -> None:
        with self._lock:
            for running in self.hubs.values():
                running.stop()
            self.hubs.clear()

    def reset(self) -> None:
        """Stop and forget every hub."""
        with self._lock:
            for name in list(self.hubs):
                self.delete_hub(name)

    def hub(self, name: str) -> RunningHub:
        try:
            return self.hubs[name.lower()]
        except KeyError:
            raise HubError(404, "IotHubNotFound", f"IoT hub {name} does not exist; create it first.") from None

    def create_hub(self, name: str) -> RunningHub:
        """Create (or return the existing) hub ``name`` and start its endpoints."""
        if not _HUB_NAME.match(name):
            raise HubError(400, "InvalidIotHubName",
                           f"IoT hub name {name!r} is invalid: use 3-50 letters, digits and hyphens, "
                           f"starting and ending with a letter or digit.")
        with self._lock:
            if name.lower() in self.hubs:
                return self.hubs[name.lower()]
            hub = Hub.load_or_create(name.lower(), self.state_dir / name.lower())
            return self._start_hub(hub)

    def delete_hub(self, name: str) -> None:
        with self._lock:
            running = self.hubs.pop(name.lower(), None)
            if running is not None:
                running.stop()
                shutil.rmtree(running.hub.directory, ignore_errors=True)

    def _start_hub(self, hub: Hub) -> RunningHub:
        previous = hub.hostname
        hub.hostname = allocate((REST_PORT, MQTT_PORT), previous)
        if previous and previous != hub.hostname:
            log.warning("IoT hub %s moved from %s to %s (the old address is in use); connection strings changed",
                        hub.name, previous, hub.hostname)
        hub.save()
        certfile, keyfile = self.ca.issue_server_cert(hub.directory, "tls", (hub.hostname,))
        rest = BackgroundServer(HubRestApp(hub), host=hub.hostname, port=REST_PORT, certfile=str(certfile),
                                keyfile=str(keyfile), name=f"aml-iothub-{hub.name}")
        rest.start()
        gateway = HubGateway(hub)
        broker = BrokerThread(gateway, host=hub.hostname, port=MQTT_PORT, certfile=str(certfile),
                              keyfile=str(keyfile), name=f"aml-iothub-mqtt-{hub.name}")
        try:
            broker.start()
        except BaseException:
            rest.stop()
            raise
        gateway.broker = broker
        running = RunningHub(hub, rest, broker, gateway, self)
        self.hubs[hub.name] = running
        return running
