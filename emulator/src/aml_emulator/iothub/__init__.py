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

import errno
import logging
import random
import re
import shutil
import socket
import threading
from pathlib import Path
from typing import Any

from aml_emulator._http import BackgroundServer
from aml_emulator.arm.tls import CertificateAuthority
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


def _port_free(host: str, port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EACCES:
                raise HubError(500, "ServerError",
                               f"Binding port {port} needs root or CAP_NET_BIND_SERVICE (the IoT SDKs hard-code "
                               f"ports 443 and 8883); run the emulator as root or grant the capability "
                               f"(setcap 'cap_net_bind_service=+ep' on the Python binary).") from None
            return False
    return True


class RunningHub:
    """One hub with its REST and MQTT endpoints."""

    def __init__(self, hub: Hub, rest: BackgroundServer, broker: BrokerThread, gateway: HubGateway) -> None:
        self.hub = hub
        self.rest = rest
        self.broker = broker
        self.gateway = gateway

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

    def __init__(self, state_dir: str | Path, *, ca: CertificateAuthority) -> None:
        self.state_dir = Path(state_dir)
        self.ca = ca
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
                self._start_hub(Hub.load_or_create(directory.name, directory))
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

    def _allocate_address(self, preferred: str) -> str:
        if preferred and _port_free(preferred, REST_PORT) and _port_free(preferred, MQTT_PORT):
            return preferred
        for _attempt in range(200):
            address = f"127.{random.randint(64, 254)}.{random.randint(1, 254)}.{random.randint(1, 254)}"
            if _port_free(address, REST_PORT) and _port_free(address, MQTT_PORT):
                return address
        raise HubError(500, "ServerError", "No free loopback address for another IoT hub; stop some emulators.")

    def _start_hub(self, hub: Hub) -> RunningHub:
        previous = hub.hostname
        hub.hostname = self._allocate_address(previous)
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
        running = RunningHub(hub, rest, broker, gateway)
        self.hubs[hub.name] = running
        return running
