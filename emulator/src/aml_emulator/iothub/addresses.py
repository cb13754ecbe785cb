"""Loopback addresses of their own for hubs and edge devices, so each can listen on the ports
the Azure IoT SDKs hard-code (443 for the service API, 8883 for MQTT)."""

from __future__ import annotations

import errno
import random
import socket

from aml_emulator.iothub.exceptions import HubError


def port_free(host: str, port: int) -> bool:
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


def allocate(ports: tuple[int, ...], preferred: str = "") -> str:
    """``preferred`` if all ``ports`` are free there, else a random free ``127.x.y.z``."""
    if preferred and all(port_free(preferred, p) for p in ports):
        return preferred
    for _attempt in range(200):
        address = f"127.{random.randint(64, 254)}.{random.randint(1, 254)}.{random.randint(1, 254)}"
        if all(port_free(address, p) for p in ports):
            return address
    raise HubError(500, "ServerError", "No free loopback address left; stop some emulators.")
