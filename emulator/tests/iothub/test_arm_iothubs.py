"""``Microsoft.Devices/IotHubs`` through the real azure-mgmt-iothub client: the keys ARM hands
out are the ones the hub's service API and device side check."""

from __future__ import annotations

import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.iot.hub import IoTHubRegistryManager
from azure.mgmt.iothub import IotHubClient
from azure.mgmt.iothub.models import IotHubDescription, IotHubSkuInfo

from aml_emulator.arm import ArmService

SUBSCRIPTION = "00000000-0000-0000-0000-0000000000aa"
GROUP = "rg"


class _Token:
    def __init__(self, token: str) -> None:
        self.token = token

    def get_token(self, *scopes, **kwargs):
        from azure.core.credentials import AccessToken

        return AccessToken(self.token, 4102444800)


@pytest.fixture
def arm(tmp_path, ca, iothub_service):
    service = ArmService(tmp_path / "arm", ca=ca, retry_after=0.05, services={"iothub": iothub_service})
    service.backend.ensure_group(SUBSCRIPTION, GROUP)
    service.start()
    yield service
    service.stop()


@pytest.fixture
def client(arm):
    return IotHubClient(_Token(arm.token), SUBSCRIPTION, base_url=arm.url,
                        credential_scopes=["https://management.azure.com/.default"],
                        connection_verify=str(arm.ca_bundle))


def test_hub_created_through_arm_serves_the_keys_it_lists(client, iothub_service):
    poller = client.iot_hub_resource.begin_create_or_update(
        GROUP, "armhub", IotHubDescription(location="westus", sku=IotHubSkuInfo(name="S1", capacity=1)))
    hub = poller.result()
    assert hub.properties.provisioning_state == "Succeeded"
    assert hub.properties.host_name == iothub_service.hub("armhub").hostname
    keys = {rule.key_name: rule for rule in client.iot_hub_resource.list_keys(GROUP, "armhub")}
    assert set(keys) >= {"iothubowner", "service", "device"}
    owner = client.iot_hub_resource.get_keys_for_key_name(GROUP, "armhub", "iothubowner")
    assert owner.primary_key == keys["iothubowner"].primary_key
    connection_string = (f"HostName={hub.properties.host_name};SharedAccessKeyName=iothubowner;"
                         f"SharedAccessKey={owner.primary_key}")
    registry = IoTHubRegistryManager.from_connection_string(connection_string)
    registry.create_device_with_sas("via-arm", None, None, "enabled")
    assert registry.get_device("via-arm").status == "enabled"
    assert [h.name for h in client.iot_hub_resource.list_by_resource_group(GROUP)] == ["armhub"]


def test_deleted_hub_is_gone(client, iothub_service):
    client.iot_hub_resource.begin_create_or_update(
        GROUP, "shortlived", IotHubDescription(location="westus", sku=IotHubSkuInfo(name="S1", capacity=1))).result()
    client.iot_hub_resource.begin_delete(GROUP, "shortlived").result()
    with pytest.raises(ResourceNotFoundError):
        client.iot_hub_resource.get(GROUP, "shortlived")
    assert "shortlived" not in iothub_service.hubs


def test_bad_sku_names_the_valid_ones(client):
    from azure.core.exceptions import HttpResponseError

    with pytest.raises(HttpResponseError) as caught:
        client.iot_hub_resource.begin_create_or_update(
            GROUP, "badsku", IotHubDescription(location="westus", sku=IotHubSkuInfo(name="X9", capacity=1)))
    assert "S1" in str(caught.value)


def test_emulator_serves_iothubs_through_its_arm(tmp_path, monkeypatch):
    from aml_emulator import Emulator

    with Emulator(tmp_path / "emu", services=["registry", "arm", "iothub"]) as emu:
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(emu.ca_bundle))
        client = IotHubClient(_Token(emu.arm_token), emu.subscription_id, base_url=emu.arm.url,
                              credential_scopes=["https://management.azure.com/.default"],
                              connection_verify=str(emu.ca_bundle))
        hub = client.iot_hub_resource.begin_create_or_update(
            emu.resource_group, "emuhub", IotHubDescription(location="westus", sku=IotHubSkuInfo(name="S1"))).result()
        assert hub.properties.host_name == emu.iothub.hub("emuhub").hostname
        registry = IoTHubRegistryManager.from_connection_string(emu.iothub.hub("emuhub").connection_string())
        registry.create_device_with_sas("d", None, None, "enabled")
    with Emulator(tmp_path / "emu", services=["registry", "arm", "iothub"]) as emu:
        client = IotHubClient(_Token(emu.arm_token), emu.subscription_id, base_url=emu.arm.url,
                              credential_scopes=["https://management.azure.com/.default"],
                              connection_verify=str(emu.ca_bundle))
        assert client.iot_hub_resource.get(emu.resource_group, "emuhub").properties.provisioning_state == "Succeeded"
        registry = IoTHubRegistryManager.from_connection_string(emu.iothub.hub("emuhub").connection_string())
        assert registry.get_device("d").device_id == "d"
