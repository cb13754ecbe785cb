"""The device side of an emulated IoT hub: what its MQTT broker does with each client.

- CONNECT: client id ``<device>`` or ``<device>/<module>``, username
  ``<hostname>/<client id>/?api-version=...``, password a SAS token for
  ``<hostname>/devices/<device>[/modules/<module>]`` signed with that identity's key.
- PUBLISH ``devices/<d>[/modules/<m>]/messages/events/<props>``: a device-to-cloud message,
  kept on the hub's events endpoint.
- PUBLISH ``$iothub/twin/GET/?$rid=R``: answered on ``$iothub/twin/res/200/?$rid=R``.
- PUBLISH ``$iothub/twin/PATCH/properties/reported/?$rid=R``: merged; answered ``204``
  with the new ``$version``.
- Desired-property changes made through the service API are pushed on
  ``$iothub/twin/PATCH/properties/desired/?$version=N``; cloud-to-device messages on
  ``devices/<d>/messages/devicebound/<props>`` (queued while the device is offline).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from aml_emulator.iothub import auth, topics
from aml_emulator.iothub.broker import BrokerThread
from aml_emulator.iothub.exceptions import HubError
from aml_emulator.iothub.models import Hub

log = logging.getLogger(__name__)


def split_client_id(client_id: str) -> tuple[str, str | None]:
    device, _sep, module = client_id.partition("/")
    return device, module or None


class HubGateway:
    """The :class:`~aml_emulator.iothub.broker.Gateway` of one hub."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.broker: BrokerThread | None = None
        hub.desired_listeners.append(self._push_desired)

    def authenticate(self, client_id: str, username: str, password: str) -> bool:
        device_id, module_id = split_client_id(client_id)
        expected_user = f"{self.hub.hostname}/{client_id}/"
        if not username.startswith(expected_user):
            log.info("IoT hub %s refused %s: username %r does not start with %r", self.hub.name, client_id,
                     username[:100], expected_user)
            return False
        try:
            identity = self.hub.identity(device_id, module_id)
            token = auth.SasToken.parse(password)
            target = f"{self.hub.hostname}/devices/{device_id}" + (f"/modules/{module_id}" if module_id else "")
            if not auth.covers(token.resource_uri, target) or token.key_name is not None:
                raise auth.SasError(f"the token is for {token.resource_uri!r}, not {target!r}")
            auth.verify(token, keys=identity.keys)
        except (HubError, auth.SasError) as exc:
            log.info("IoT hub %s refused %s: %s", self.hub.name, client_id, exc)
            return False
        if identity.status != "enabled" or (module_id and self.hub.identity(device_id).status != "enabled"):
            log.info("IoT hub %s refused %s: the device is disabled", self.hub.name, client_id)
            return False
        return True

    def may_subscribe(self, client_id: str, topic_filter: str) -> bool:
        return topics.allowed_subscription(client_id, topic_filter)

    def on_subscribed(self, client_id: str, filters: list[str]) -> None:
        """Nothing waits on a device's subscriptions: what the hub sends it is queued by the broker."""

    def remembered_subscriptions(self, client_id: str) -> list[str]:
        return []

    def on_connection(self, client_id: str, connected: bool) -> None:
        device_id, module_id = split_client_id(client_id)
        self.hub.set_connected(device_id, module_id, connected)

    def on_publish(self, client_id: str, topic: str, payload: bytes) -> None:
        device_id, module_id = split_client_id(client_id)
        telemetry = topics.parse_telemetry(topic)
        if telemetry is not None:
            if (telemetry.device_id, telemetry.module_id) != (device_id, module_id):
                log.warning("IoT hub %s dropped a message %s published on another identity's topic", self.hub.name, client_id)
                return
            self.hub.add_event(device_id, module_id, payload, telemetry.properties, telemetry.system)
            return
        query = topics.twin_get(topic)
        if query is not None:
            twin = self.hub.identity(device_id, module_id).twin
            with self.hub.lock:
                body = twin.properties()
            self._send(client_id, topics.twin_response(200, query.get("$rid", "")), json.dumps(body).encode())
            return
        query = topics.twin_reported(topic)
        if query is not None:
            rid = query.get("$rid", "")
            try:
                patch = json.loads(payload or b"{}")
                if not isinstance(patch, dict):
                    raise ValueError("the patch is not a JSON object")
            except ValueError as exc:
                log.info("IoT hub %s: bad reported patch from %s: %s", self.hub.name, client_id, exc)
                self._send(client_id, topics.twin_response(400, rid), b"")
                return
            version = self.hub.patch_reported(device_id, module_id, patch)
            self._send(client_id, topics.twin_response(204, rid, version), b"")
            return
        if topics.method_response(topic) is not None:
            return  # direct methods are not implemented; a late response is simply dropped
        log.info("IoT hub %s ignored a publish from %s on an unknown topic %s", self.hub.name, client_id, topic[:200])

    def _send(self, client_id: str, topic: str, payload: bytes, *, queue: bool = False) -> None:
        if self.broker is not None:
            self.broker.send_to(client_id, topic, payload, queue_if_offline=queue)

    def _push_desired(self, device_id: str, module_id: str | None, patch: dict[str, Any]) -> None:
        client_id = device_id + (f"/{module_id}" if module_id else "")
        self._send(client_id, topics.desired_patch(int(patch.get("$version", 0))), json.dumps(patch).encode())

    def send_c2d(self, device_id: str, body: bytes, properties: dict[str, str] | None = None,
                 message_id: str | None = None) -> None:
        """Queue a cloud-to-device message for ``device_id`` (delivered when it is connected)."""
        self.hub.identity(device_id)
        system = {"$.mid": message_id} if message_id else {}
        self._send(device_id, topics.c2d(device_id, system, properties or {}), body, queue=True)
