"""The hub's service REST API, driven by the real azure-iot-hub SDK."""

from __future__ import annotations

import pytest
from azure.iot.hub import IoTHubConfigurationManager, IoTHubRegistryManager
from azure.iot.hub.models import Configuration, ConfigurationContent, Twin, TwinProperties
from msrest.exceptions import HttpOperationError


def test_device_with_sas_keys_round_trips(hub):
    registry = IoTHubRegistryManager.from_connection_string(hub.connection_string())
    created = registry.create_device_with_sas("sensor-1", None, None, "enabled")
    assert created.device_id == "sensor-1"
    assert created.authentication.type == "sas"
    fetched = registry.get_device("sensor-1")
    assert fetched.authentication.symmetric_key.primary_key == created.authentication.symmetric_key.primary_key
    assert fetched.capabilities.iot_edge is False
    assert [d.device_id for d in registry.get_devices()] == ["sensor-1"]
    registry.delete_device("sensor-1")
    with pytest.raises(HttpOperationError) as caught:
        registry.get_device("sensor-1")
    assert caught.value.response.status_code == 404
    assert "DeviceNotFound" in caught.value.response.text


def test_wrong_key_is_refused_with_the_hubs_401(hub):
    good = hub.connection_string()
    bad = good.rsplit("SharedAccessKey=", 1)[0] + "SharedAccessKey=" + "A" * 43 + "="
    registry = IoTHubRegistryManager.from_connection_string(bad)
    with pytest.raises(HttpOperationError) as caught:
        registry.get_devices()
    assert caught.value.response.status_code == 401
    assert caught.value.response.json()["Message"] == "ErrorCode:IotHubUnauthorizedAccess;Unauthorized"


def test_edge_device_gets_system_modules_and_user_modules(hub):
    registry = IoTHubRegistryManager.from_connection_string(hub.connection_string())
    registry.create_device_with_sas("edge-1", None, None, "enabled", iot_edge=True)
    modules = {m.module_id for m in registry.get_modules("edge-1")}
    assert modules == {"$edgeAgent", "$edgeHub"}
    registry.create_module_with_sas("edge-1", "scorer", "IotEdge", None, None)
    assert registry.get_module("edge-1", "scorer").managed_by == "IotEdge"
    registry.delete_module("edge-1", "scorer")
    assert {m.module_id for m in registry.get_modules("edge-1")} == {"$edgeAgent", "$edgeHub"}


def test_twin_patch_bumps_etag_and_stale_etag_is_refused(hub):
    registry = IoTHubRegistryManager.from_connection_string(hub.connection_string())
    registry.create_device_with_sas("d1", None, None, "enabled")
    twin = registry.get_twin("d1")
    patch = Twin(properties=TwinProperties(desired={"threshold": 3}), tags={"site": "a"})
    updated = registry.update_twin("d1", patch, twin.etag)
    assert updated.properties.desired["threshold"] == 3
    assert updated.tags == {"site": "a"}
    assert updated.etag != twin.etag
    with pytest.raises(HttpOperationError) as caught:
        registry.update_twin("d1", Twin(properties=TwinProperties(desired={"threshold": 4})), twin.etag)
    assert caught.value.response.status_code == 412
    removed = registry.update_twin("d1", Twin(properties=TwinProperties(desired={"threshold": None})), "*")
    assert "threshold" not in removed.properties.desired


def test_configurations_and_apply_on_edge_device(hub):
    registry = IoTHubRegistryManager.from_connection_string(hub.connection_string())
    configs = IoTHubConfigurationManager.from_connection_string(hub.connection_string())
    registry.create_device_with_sas("edge-2", None, None, "enabled", iot_edge=True)
    content = ConfigurationContent(modules_content={
        "$edgeAgent": {"properties.desired": {"schemaVersion": "1.1", "modules": {"scorer": {"type": "docker"}}}},
        "$edgeHub": {"properties.desired": {"schemaVersion": "1.1", "routes": {"r": "FROM /* INTO $upstream"}}},
    })
    created = configs.create_configuration(Configuration(id="deploy-1", content=content, target_condition="*", priority=1))
    assert created.id == "deploy-1"
    assert [c.id for c in configs.get_configurations()] == ["deploy-1"]
    configs.apply_configuration_on_edge_device("edge-2", content)
    agent = registry.get_module_twin("edge-2", "$edgeAgent")
    assert agent.properties.desired["modules"]["scorer"]["type"] == "docker"
    assert registry.get_module_twin("edge-2", "$edgeHub").properties.desired["routes"]["r"] == "FROM /* INTO $upstream"
    assert "scorer" in {m.module_id for m in registry.get_modules("edge-2")}
    configs.delete_configuration("deploy-1")
    assert configs.get_configurations() == []


def test_apply_configuration_to_a_plain_device_says_why(hub):
    registry = IoTHubRegistryManager.from_connection_string(hub.connection_string())
    configs = IoTHubConfigurationManager.from_connection_string(hub.connection_string())
    registry.create_device_with_sas("plain", None, None, "enabled")
    with pytest.raises(HttpOperationError) as caught:
        configs.apply_configuration_on_edge_device("plain", ConfigurationContent(modules_content={"$edgeAgent": {"properties.desired": {}}, "$edgeHub": {"properties.desired": {}}}))
    assert caught.value.response.status_code == 400
    assert "not an IoT Edge device" in caught.value.response.text


def test_state_survives_a_restart(tmp_path, ca, monkeypatch):
    from aml_emulator.iothub import IotHubService

    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(ca.cert_path))
    service = IotHubService(tmp_path / "state", ca=ca).start()
    try:
        hub = service.create_hub("durable")
        registry = IoTHubRegistryManager.from_connection_string(hub.connection_string())
        registry.create_device_with_sas("keep-me", None, None, "enabled")
        registry.update_twin("keep-me", Twin(properties=TwinProperties(desired={"a": 1})), "*")
        connection_string = hub.connection_string()
    finally:
        service.stop()
    again = IotHubService(tmp_path / "state", ca=ca).start()
    try:
        assert again.hub("durable").connection_string() == connection_string
        registry = IoTHubRegistryManager.from_connection_string(connection_string)
        assert registry.get_twin("keep-me").properties.desired["a"] == 1
    finally:
        again.stop()


def test_edge_content_without_edge_hub_is_refused_and_nothing_is_applied(hub):
    registry = IoTHubRegistryManager.from_connection_string(hub.connection_string())
    configs = IoTHubConfigurationManager.from_connection_string(hub.connection_string())
    registry.create_device_with_sas("edge-3", None, None, "enabled", iot_edge=True)
    content = ConfigurationContent(modules_content={"$edgeAgent": {"properties.desired": {"schemaVersion": "1.1"}}})
    with pytest.raises(HttpOperationError) as caught:
        configs.apply_configuration_on_edge_device("edge-3", content)
    assert caught.value.response.status_code == 400
    assert "lacks $edgeHub" in caught.value.response.text
    assert registry.get_module_twin("edge-3", "$edgeAgent").properties.desired.get("schemaVersion") is None
