"""The hub's device side over MQTT/TLS, driven by the real azure-iot-device SDK."""

from __future__ import annotations

import queue
import time

import pytest
from azure.iot.device import IoTHubDeviceClient, Message
from azure.iot.device.exceptions import ClientError, CredentialError, ConnectionFailedError
from azure.iot.hub import IoTHubRegistryManager
from azure.iot.hub.models import Twin, TwinProperties


def _wait_for(condition, timeout: float = 15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not met before the deadline")


@pytest.fixture
def device(hub, ca):
    registry = IoTHubRegistryManager.from_connection_string(hub.connection_string())
    registry.create_device_with_sas("thermo", None, None, "enabled")
    client = IoTHubDeviceClient.create_from_connection_string(
        hub.device_connection_string("thermo"), server_verification_cert=ca.cert_path.read_text())
    client.connect()
    yield registry, client
    client.shutdown()


def test_device_to_cloud_messages_reach_the_events_endpoint_in_order(hub, device):
    _registry, client = device
    for n in range(3):
        message = Message(f'{{"n": {n}}}')
        message.custom_properties["kind"] = "reading"
        message.message_id = f"m{n}"
        client.send_message(message)
    events = _wait_for(lambda: len(hub.events()) >= 3 and hub.events())
    assert [e["body"] for e in events] == ['{"n": 0}', '{"n": 1}', '{"n": 2}']
    assert events[0]["properties"] == {"kind": "reading"}
    assert events[0]["systemProperties"]["$.mid"] == "m0"
    assert events[0]["deviceId"] == "thermo"


def test_twin_get_and_reported_patch(hub, device):
    registry, client = device
    registry.update_twin("thermo", Twin(properties=TwinProperties(desired={"interval": 5})), "*")
    twin = client.get_twin()
    assert twin["desired"]["interval"] == 5
    client.patch_twin_reported_properties({"firmware": "1.2"})
    assert registry.get_twin("thermo").properties.reported["firmware"] == "1.2"
    assert client.get_twin()["reported"]["firmware"] == "1.2"


def test_desired_property_changes_are_pushed(hub, device):
    registry, client = device
    patches: queue.Queue = queue.Queue()
    client.on_twin_desired_properties_patch_received = patches.put
    client.get_twin()  # the handler's subscription is in place once a twin round trip is done
    registry.update_twin("thermo", Twin(properties=TwinProperties(desired={"interval": 9})), "*")
    patch = patches.get(timeout=15)
    assert patch["interval"] == 9
    assert patch["$version"] >= 2


def test_cloud_to_device_message_is_delivered(hub, device):
    _registry, client = device
    received: queue.Queue = queue.Queue()
    client.on_message_received = received.put
    client.get_twin()
    hub.send_c2d("thermo", "reboot", properties={"urgency": "low"}, message_id="c1")
    message = received.get(timeout=15)
    assert message.data == b"reboot"
    assert message.custom_properties["urgency"] == "low"
    assert message.message_id == "c1"


def test_wrong_device_key_cannot_connect(hub, ca):
    registry = IoTHubRegistryManager.from_connection_string(hub.connection_string())
    registry.create_device_with_sas("intruder", None, None, "enabled")
    wrong = hub.device_connection_string("intruder").rsplit("SharedAccessKey=", 1)[0] + "SharedAccessKey=" + "B" * 43 + "="
    client = IoTHubDeviceClient.create_from_connection_string(
        wrong, server_verification_cert=ca.cert_path.read_text(), connection_retry=False)
    try:
        with pytest.raises((CredentialError, ConnectionFailedError, ClientError)):
            client.connect()
    finally:
        client.shutdown()
