"""The ARM container-registry operations, driven by the real azure-mgmt-containerregistry client."""

from __future__ import annotations

import logging

import pytest
import requests
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError, ResourceNotFoundError, ServiceRequestError

from arm_testing import REGISTRY, RESOURCE_GROUP, SUBSCRIPTION


def _v2_status(registry, username: str, password: str) -> int:
    return requests.get(f"{registry.url}/v2/", auth=(username, password), timeout=10).status_code


def test_get_registry_has_the_real_models_shape(client, registry) -> None:
    found = client.registries.get(RESOURCE_GROUP, REGISTRY)
    assert found.name == REGISTRY
    assert found.type == "Microsoft.ContainerRegistry/registries"
    assert found.id == (
        f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP}"
        f"/providers/Microsoft.ContainerRegistry/registries/{REGISTRY}"
    )
    assert found.login_server == registry.login_server
    assert found.admin_user_enabled is True
    assert found.provisioning_state == "Succeeded"
    assert found.sku.name == "Basic"
    assert found.creation_date is not None


def test_get_registry_is_case_insensitive_like_arm(client) -> None:
    assert client.registries.get(RESOURCE_GROUP.upper(), REGISTRY.upper()).name == REGISTRY


def test_list_in_resource_group_and_in_subscription(client) -> None:
    assert [r.name for r in client.registries.list_by_resource_group(RESOURCE_GROUP)] == [REGISTRY]
    assert [r.name for r in client.registries.list()] == [REGISTRY]


def test_list_credentials_returns_both_passwords_and_both_work(client, registry) -> None:
    result = client.registries.list_credentials(RESOURCE_GROUP, REGISTRY)
    assert result.username == registry.credentials.username
    assert [p.name for p in result.passwords] == ["password", "password2"]
    values = {p.name: p.value for p in result.passwords}
    assert values == registry.credentials.passwords
    for value in values.values():
        assert _v2_status(registry, result.username, value) == 200
    assert _v2_status(registry, result.username, "not-" + values["password"]) == 401


@pytest.mark.parametrize("rotated, kept", [("password", "password2"), ("password2", "password")])
def test_regenerate_kills_the_old_value_at_once_and_keeps_the_other(client, registry, rotated, kept) -> None:
    before = {p.name: p.value for p in client.registries.list_credentials(RESOURCE_GROUP, REGISTRY).passwords}
    result = client.registries.regenerate_credential(RESOURCE_GROUP, REGISTRY, {"name": rotated})
    after = {p.name: p.value for p in result.passwords}
    assert after[rotated] != before[rotated]
    assert after[kept] == before[kept]
    user = result.username
    assert _v2_status(registry, user, before[rotated]) == 401
    assert _v2_status(registry, user, after[rotated]) == 200
    assert _v2_status(registry, user, after[kept]) == 200
    listed = {p.name: p.value for p in client.registries.list_credentials(RESOURCE_GROUP, REGISTRY).passwords}
    assert listed == after


def test_regenerate_with_an_unknown_name_is_400_naming_the_valid_ones(arm) -> None:
    response = requests.post(
        f"{arm.url}/subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP}/providers/"
        f"Microsoft.ContainerRegistry/registries/{REGISTRY}/regenerateCredential?api-version=2025-11-01",
        json={"name": "password3"}, headers={"Authorization": f"Bearer {arm.token}"},
        verify=str(arm.ca_bundle), timeout=10,
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "InvalidParameter"
    assert "password, password2" in error["message"]


def test_regenerate_with_a_malformed_body_is_400(arm) -> None:
    response = requests.post(
        f"{arm.url}/subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP}/providers/"
        f"Microsoft.ContainerRegistry/registries/{REGISTRY}/regenerateCredential?api-version=2025-11-01",
        data=b"{nope", headers={"Authorization": f"Bearer {arm.token}", "Content-Type": "application/json"},
        verify=str(arm.ca_bundle), timeout=10,
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "InvalidRequestContent"


def test_unknown_registry_is_resource_not_found(client) -> None:
    with pytest.raises(ResourceNotFoundError) as info:
        client.registries.get(RESOURCE_GROUP, "missing")
    assert info.value.error.code == "ResourceNotFound"
    assert "Microsoft.ContainerRegistry/registries/missing" in info.value.error.message


def test_unknown_resource_group_is_resource_group_not_found(client) -> None:
    with pytest.raises(ResourceNotFoundError) as info:
        client.registries.get("other-group", REGISTRY)
    assert info.value.error.code == "ResourceGroupNotFound"


def test_unknown_subscription_is_subscription_not_found(arm, make_client) -> None:
    from azure.mgmt.containerregistry import ContainerRegistryManagementClient

    other = ContainerRegistryManagementClient(
        make_client()._config.credential, "00000000-0000-0000-0000-000000000001",
        base_url=arm.url, credential_scopes=["https://management.azure.com/.default"],
        connection_verify=str(arm.ca_bundle), retry_total=0,
    )
    with pytest.raises(ResourceNotFoundError) as info:
        other.registries.get(RESOURCE_GROUP, REGISTRY)
    assert info.value.error.code == "SubscriptionNotFound"


def test_unimplemented_operation_is_501_naming_it_never_a_silent_success(client) -> None:
    with pytest.raises(HttpResponseError) as info:
        client.registries.begin_delete(RESOURCE_GROUP, REGISTRY).result()
    assert info.value.status_code == 501
    assert info.value.error.code == "NotImplemented"
    assert info.value.error.message == (
        "The Microsoft.ContainerRegistry/registries/delete operation has not been implemented in the emulator"
    )


def test_unimplemented_action_is_501_naming_it(client) -> None:
    with pytest.raises(HttpResponseError) as info:
        client.registries.list_usages(RESOURCE_GROUP, REGISTRY)
    assert info.value.status_code == 501
    assert info.value.error.message == (
        "The Microsoft.ContainerRegistry/registries/listUsages/read operation has not been "
        "implemented in the emulator"
    )


def test_unknown_provider_namespace_is_501(arm) -> None:
    response = requests.get(
        f"{arm.url}/subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP}/providers/"
        f"Microsoft.Sql/servers/db1?api-version=2024-05-01",
        headers={"Authorization": f"Bearer {arm.token}"}, verify=str(arm.ca_bundle), timeout=10,
    )
    assert response.status_code == 501
    assert response.json() == {"error": {
        "code": "NotImplemented",
        "message": "The Microsoft.Sql/servers/read operation has not been implemented in the emulator",
    }}


def test_registry_operations_leave_no_secret_in_logs_or_reprs(client, arm, registry, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    client.registries.get(RESOURCE_GROUP, REGISTRY)
    result = client.registries.regenerate_credential(RESOURCE_GROUP, REGISTRY, {"name": "password"})
    secrets = [arm.token, *[p.value for p in result.passwords]]
    with pytest.raises(HttpResponseError) as info:
        client.registries.begin_delete(RESOURCE_GROUP, REGISTRY).result()
    texts = [caplog.text, repr(arm), repr(arm.backend), repr(arm.backend.tokens), str(info.value),
             repr(arm.backend.subscriptions)]
    for secret in secrets:
        for text in texts:
            assert secret not in text
