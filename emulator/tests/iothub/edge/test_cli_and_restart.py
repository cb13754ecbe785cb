"""``aml iot add-edge-device`` / ``monitor-events``, and edge devices that come back after the
emulator restarts, still running their deployment."""

from __future__ import annotations

import json

from azure.iot.hub import IoTHubConfigurationManager, IoTHubRegistryManager
from click.testing import CliRunner

from aml_emulator.iothub import IotHubService
from aml_emulator.iothub.cli import iot

from .conftest import wait_for
from .test_edge_device import DEVICE, deploy, manifest, module_status


def test_cli_adds_an_edge_device_and_monitors_its_messages(hub, registry, ca):
    runner = CliRunner()
    env = {"AML_IOTHUB_CONNECTION_STRING": hub.connection_string(), "REQUESTS_CA_BUNDLE": str(ca.cert_path)}
    added = runner.invoke(iot, ["add-edge-device", DEVICE], env=env)
    assert added.exit_code == 0, added.output
    assert f"Edge device {DEVICE} runs" in added.output
    registry_manager = IoTHubRegistryManager.from_connection_string(hub.connection_string())
    assert registry_manager.get_device(DEVICE).capabilities.iot_edge is True
    configs = IoTHubConfigurationManager.from_connection_string(hub.connection_string())
    deploy(configs, manifest(registry, {"sensor": {"env": {"MODE": "sensor", "COUNT": "3"}}},
                             {"up": "FROM /messages/modules/sensor/outputs/* INTO $upstream"}))
    wait_for(lambda: len(hub.events()) >= 3, what="3 readings")
    monitored = runner.invoke(iot, ["monitor-events", "--module", "sensor"], env=env)
    assert monitored.exit_code == 0, monitored.output
    lines = [json.loads(line) for line in monitored.output.splitlines()]
    assert [json.loads(e["body"])["n"] for e in lines] == [0, 1, 2]


def test_cli_refuses_a_wrong_key_with_the_hubs_answer(hub, ca):
    bad = hub.connection_string().rsplit("SharedAccessKey=", 1)[0] + "SharedAccessKey=" + "C" * 43 + "="
    result = CliRunner().invoke(iot, ["monitor-events"], env={"AML_IOTHUB_CONNECTION_STRING": bad,
                                                             "REQUESTS_CA_BUNDLE": str(ca.cert_path)})
    assert result.exit_code != 0
    assert "401" in result.output and "IotHubUnauthorizedAccess" in result.output


def test_edge_device_and_its_modules_come_back_after_a_restart(tmp_path, ca, registry, clock, monkeypatch):
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(ca.cert_path))
    service = IotHubService(tmp_path / "durable", ca=ca, clock=clock).start()
    try:
        hub = service.create_hub("durable")
        hub.add_edge_device(DEVICE)
        configs = IoTHubConfigurationManager.from_connection_string(hub.connection_string())
        deploy(configs, manifest(registry, {"echo": {"env": {"MODE": "echo"}}}, {"up": "FROM /* INTO $upstream"}))
        registry_manager = IoTHubRegistryManager.from_connection_string(hub.connection_string())
        wait_for(lambda: module_status(registry_manager, "echo") == "running", what="echo running")
        connection_string = hub.connection_string()
    finally:
        service.stop()
    again = IotHubService(tmp_path / "durable", ca=ca, clock=clock).start()
    try:
        hub = again.hub("durable")
        assert DEVICE in hub.edge_devices
        registry_manager = IoTHubRegistryManager.from_connection_string(connection_string)
        wait_for(lambda: registry_manager.get_module_twin(DEVICE, "echo").properties.reported.get("mode") == "echo"
                 and hub.edge_devices[DEVICE].agent.modules["echo"].restart_count == 0
                 and hub.edge_devices[DEVICE].agent.modules["echo"].runtime_status == "running",
                 what="echo running again")
    finally:
        again.stop()
