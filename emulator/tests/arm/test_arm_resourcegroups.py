"""``Microsoft.Resources/resourceGroups`` through the real azure-mgmt-resource client: create
(201, then 200 on update), get, list, check_existence, a long-running delete that takes the
group's resources with it, and ARM's errors; the emulator's own group is there from the start."""

from __future__ import annotations

import pytest
import requests
from arm_testing import REGISTRY, RESOURCE_GROUP, SCOPES, SUBSCRIPTION, FixedToken

from aml_emulator.arm import ArmService

pytest.importorskip("azure.mgmt.resource")


@pytest.fixture
def resource_client(arm: ArmService):
    from azure.mgmt.resource.resources import ResourceManagementClient

    return ResourceManagementClient(FixedToken(arm.token), SUBSCRIPTION, base_url=arm.url, credential_scopes=SCOPES,
                                    connection_verify=str(arm.ca_bundle), retry_total=0, polling_interval=0)


def test_the_emulators_own_group_is_there_from_the_start(resource_client):
    assert resource_client.resource_groups.check_existence(RESOURCE_GROUP) is True
    assert [g.name for g in resource_client.resource_groups.list()] == [RESOURCE_GROUP]


def test_create_get_list_and_update(resource_client):
    made = resource_client.resource_groups.create_or_update("myresourcegroup", {"location": "West Europe",
                                                                                "tags": {"team": "ml"}})
    assert (made.name, made.location, made.tags) == ("myresourcegroup", "West Europe", {"team": "ml"})
    assert made.id == f"/subscriptions/{SUBSCRIPTION}/resourceGroups/myresourcegroup"
    assert made.properties.provisioning_state == "Succeeded"
    got = resource_client.resource_groups.get("MyResourceGroup")  # names compare case-insensitively
    assert got.name == "myresourcegroup"
    assert resource_client.resource_groups.check_existence("myresourcegroup") is True
    assert sorted(g.name for g in resource_client.resource_groups.list()) == [RESOURCE_GROUP, "myresourcegroup"]
    updated = resource_client.resource_groups.create_or_update("myresourcegroup", {"location": "westeurope",
                                                                                   "tags": {"team": "ops"}})
    assert updated.tags == {"team": "ops"}
    patched = resource_client.resource_groups.update("myresourcegroup", {"tags": {"team": "infra"}})
    assert (patched.tags, patched.location) == ({"team": "infra"}, "West Europe")


def test_create_answers_201_then_200(arm: ArmService):
    url = f"{arm.url}/subscriptions/{SUBSCRIPTION}/resourcegroups/rg1?api-version=2021-04-01"
    headers = {"Authorization": f"Bearer {arm.token}"}
    first = requests.put(url, json={"location": "westus"}, headers=headers, verify=str(arm.ca_bundle), timeout=10)
    again = requests.put(url, json={"location": "westus"}, headers=headers, verify=str(arm.ca_bundle), timeout=10)
    assert (first.status_code, again.status_code) == (201, 200)


def test_delete_is_long_running_and_removes_the_groups_resources(arm: ArmService, resource_client):
    from azure.mgmt.containerregistry import ContainerRegistryManagementClient

    registries = ContainerRegistryManagementClient(FixedToken(arm.token), SUBSCRIPTION, base_url=arm.url,
                                                   credential_scopes=SCOPES, connection_verify=str(arm.ca_bundle),
                                                   retry_total=0)
    assert registries.registries.get(RESOURCE_GROUP, REGISTRY).name == REGISTRY
    poller = resource_client.resource_groups.begin_delete(RESOURCE_GROUP)
    assert poller.result(timeout=30) is None
    assert poller.status() == "Succeeded"
    assert resource_client.resource_groups.check_existence(RESOURCE_GROUP) is False
    from azure.core.exceptions import ResourceNotFoundError

    with pytest.raises(ResourceNotFoundError) as info:
        registries.registries.get(RESOURCE_GROUP, REGISTRY)
    assert info.value.error.code == "ResourceGroupNotFound"


def test_errors_have_arms_codes_and_messages(resource_client):
    from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError

    with pytest.raises(ResourceNotFoundError) as info:
        resource_client.resource_groups.get("missing")
    assert info.value.error.code == "ResourceGroupNotFound"
    assert info.value.error.message == "Resource group 'missing' could not be found."
    with pytest.raises(ResourceNotFoundError):
        resource_client.resource_groups.begin_delete("missing").result(timeout=10)
    assert resource_client.resource_groups.check_existence("missing") is False
    resource_client.resource_groups.create_or_update("rg2", {"location": "westus"})
    with pytest.raises((ResourceExistsError, HttpResponseError)) as moved:
        resource_client.resource_groups.create_or_update("rg2", {"location": "eastus"})
    assert moved.value.error.code == "InvalidResourceGroupLocation"
    with pytest.raises(HttpResponseError) as no_location:
        resource_client.resource_groups.create_or_update("rg3", {"tags": {}})
    assert no_location.value.status_code == 400
