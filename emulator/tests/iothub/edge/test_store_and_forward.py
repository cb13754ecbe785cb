"""Store-and-forward: nothing accepted by the edge hub is lost while the hub is unreachable, a
module restarts or the edge hub itself restarts; priorities drain first; TTLs expire."""

from __future__ import annotations

import json

from azure.iot.hub import IoTHubConfigurationManager, IoTHubRegistryManager
from azure.iot.hub.models import CloudToDeviceMethod, ConfigurationContent

from aml_emulator.iothub.edge.store import MessageStore

from .conftest import wait_for
from .test_edge_device import DEVICE, agent_reported, deploy, manifest, module_status

ROUTES = {
    "toEcho": 'FROM /messages/modules/sensor/outputs/readings INTO BrokeredEndpoint("/modules/echo/inputs/input1")',
    "up": "FROM /messages/modules/echo/outputs/* INTO $upstream",
}


def _bodies(hub):
    return [json.loads(e["body"]) for e in hub.events()]


def test_upstream_outage_holds_messages_until_the_link_returns(hub, registry):
    device = hub.add_edge_device(DEVICE)
    configs = IoTHubConfigurationManager.from_connection_string(hub.connection_string())
    device.edge_hub.set_upstream_reachable(False)
    deploy(configs, manifest(registry, {"sensor": {"env": {"MODE": "sensor", "COUNT": "4"}}, "echo": {"env": {"MODE": "echo"}}}, ROUTES))
    wait_for(lambda: device.edge_hub.store.pending("$upstream") == 4, what="4 messages held for $upstream")
    assert hub.events() == []
    device.edge_hub.set_upstream_reachable(True)
    wait_for(lambda: len(hub.events()) == 4, what="delivery after the link returns")
    assert _bodies(hub) == [{"echo": {"n": n}} for n in range(4)]


def test_messages_survive_a_module_restart_and_an_edge_hub_restart(hub, registry):
    device = hub.add_edge_device(DEVICE)
    registry_manager = IoTHubRegistryManager.from_connection_string(hub.connection_string())
    configs = IoTHubConfigurationManager.from_connection_string(hub.connection_string())
    # at-least-once through restarts: each restart leaves the queues and the order intact
    deploy(configs, manifest(registry, {"sensor": {"env": {"MODE": "sensor", "COUNT": "6"}}, "echo": {"env": {"MODE": "echo"}}}, ROUTES))
    wait_for(lambda: len(hub.events()) == 6, what="first 6")
    result = registry_manager.invoke_device_module_method(DEVICE, "$edgeAgent", CloudToDeviceMethod(
        method_name="RestartModule", payload={"schemaVersion": "1.0", "id": "echo"}))
    assert result.status == 200
    wait_for(lambda: agent_reported(registry_manager)["modules"]["echo"]["restartCount"] == 1, what="echo restarted")
    device.edge_hub.restart()
    # the sensor sends 6 more once restarted; none lost, in order
    registry_manager.invoke_device_module_method(DEVICE, "$edgeAgent", CloudToDeviceMethod(
        method_name="RestartModule", payload={"schemaVersion": "1.0", "id": "sensor"}))
    wait_for(lambda: len(hub.events()) == 12, what="6 more after restarts")
    assert _bodies(hub) == [{"echo": {"n": n}} for n in range(6)] * 2


def test_queue_kept_on_disk_is_delivered_by_a_restarted_edge_hub(hub, registry):
    device = hub.add_edge_device(DEVICE)
    configs = IoTHubConfigurationManager.from_connection_string(hub.connection_string())
    device.edge_hub.set_upstream_reachable(False)
    deploy(configs, manifest(registry, {"sensor": {"env": {"MODE": "sensor", "COUNT": "3"}}},
                             {"up": "FROM /messages/modules/sensor/outputs/* INTO $upstream"}))
    wait_for(lambda: device.edge_hub.store.pending("$upstream") == 3, what="3 held")
    device.edge_hub.restart()  # the store is read back from disk
    assert device.edge_hub.store.pending("$upstream") == 3
    device.edge_hub.set_upstream_reachable(True)
    wait_for(lambda: len(hub.events()) == 3, what="delivered after the restart")


def test_higher_priority_drains_first_and_expired_messages_are_dropped(tmp_path, clock):
    store = MessageStore(tmp_path, clock=clock)
    store.add("$upstream", b"low", {}, {}, priority=5, ttl_seconds=100)
    store.add("$upstream", b"short-lived", {}, {}, priority=0, ttl_seconds=10)
    store.add("$upstream", b"high", {}, {}, priority=1, ttl_seconds=None)
    clock.advance(11)
    order = []
    while (message := store.next_for("$upstream")) is not None:
        order.append(message.body)
        store.ack(message.id)
    assert order == [b"high", b"low"]
    assert store.expired == 1
    again = MessageStore(tmp_path, clock=clock)
    assert again.pending() == 0
