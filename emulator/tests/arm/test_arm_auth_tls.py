"""Why the ARM emulator speaks TLS, and how it checks bearer tokens and api-versions."""

from __future__ import annotations

import hmac
import stat

import pytest
import requests
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError, ServiceRequestError

from aml_emulator.arm import ArmService
from arm_testing import REGISTRY, RESOURCE_GROUP, SUBSCRIPTION

REGISTRY_PATH = (
    f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP}"
    f"/providers/Microsoft.ContainerRegistry/registries/{REGISTRY}"
)


def test_azure_core_refuses_bearer_tokens_over_plain_http(arm, make_client) -> None:
    # This is the reason the ARM emulator serves HTTPS: the SDK never sends the token over http.
    plain = make_client(base_url=arm.url.replace("https://", "http://"))
    with pytest.raises(ServiceRequestError, match="non-TLS protected"):
        plain.registries.get(RESOURCE_GROUP, REGISTRY)


def test_server_certificate_is_refused_without_the_emulator_ca(arm) -> None:
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(f"{arm.url}{REGISTRY_PATH}?api-version=2025-11-01", verify=True, timeout=10)


def test_server_certificate_is_valid_for_localhost_too(arm) -> None:
    url = arm.url.replace("127.0.0.1", "localhost")
    response = requests.get(f"{url}{REGISTRY_PATH}?api-version=2025-11-01",
                            headers={"Authorization": f"Bearer {arm.token}"},
                            verify=str(arm.ca_bundle), timeout=10)
    assert response.status_code == 200


def test_ca_is_kept_across_restarts_and_keys_are_private(tmp_path) -> None:
    with ArmService(tmp_path) as first:
        pem = first.ca_bundle.read_bytes()
    with ArmService(tmp_path) as second:
        assert second.ca_bundle.read_bytes() == pem
    for key in ("ca-key.pem", "arm-key.pem"):
        assert stat.S_IMODE((tmp_path / key).stat().st_mode) == 0o600


def test_a_token_the_emulator_did_not_issue_is_401(make_client) -> None:
    with pytest.raises(ClientAuthenticationError) as info:
        make_client("forged-token").registries.get(RESOURCE_GROUP, REGISTRY)
    assert info.value.status_code == 401
    assert info.value.error.code == "AuthenticationFailed"


def test_a_missing_authorization_header_is_401_with_a_bearer_challenge(arm) -> None:
    response = requests.get(f"{arm.url}{REGISTRY_PATH}?api-version=2025-11-01",
                            verify=str(arm.ca_bundle), timeout=10)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "AuthenticationFailed"
    assert "missing" in response.json()["error"]["message"]
    assert response.headers["WWW-Authenticate"].startswith("Bearer ")


def test_basic_auth_is_not_a_bearer_token(arm) -> None:
    response = requests.get(f"{arm.url}{REGISTRY_PATH}?api-version=2025-11-01", auth=("u", arm.token),
                            verify=str(arm.ca_bundle), timeout=10)
    assert response.status_code == 401


def test_authentication_comes_before_everything_else(arm) -> None:
    # an unknown operation with no token must not reveal what exists
    response = requests.delete(f"{arm.url}{REGISTRY_PATH}", verify=str(arm.ca_bundle), timeout=10)
    assert response.status_code == 401


def test_issued_tokens_work_until_reset_and_the_static_one_survives(arm, make_client) -> None:
    extra = arm.issue_token()
    assert make_client(extra).registries.get(RESOURCE_GROUP, REGISTRY).name == REGISTRY
    arm.reset()
    with pytest.raises(ClientAuthenticationError):
        make_client(extra).registries.get(RESOURCE_GROUP, REGISTRY)
    assert make_client().registries.get(RESOURCE_GROUP, REGISTRY).name == REGISTRY


def test_token_check_is_constant_time(arm, make_client, monkeypatch) -> None:
    calls = []
    real = hmac.compare_digest

    def spy(a, b):
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    make_client().registries.get(RESOURCE_GROUP, REGISTRY)
    assert any(arm.token.encode() in pair for pair in calls)


def test_the_sdk_default_api_version_is_accepted(client) -> None:
    assert client._config.api_version == "2025-11-01"
    assert client.registries.get(RESOURCE_GROUP, REGISTRY).name == REGISTRY


@pytest.mark.parametrize("version", ["2019-05-01", "2023-01-01-preview", "2023-07-01"])
def test_older_versions_in_the_declared_range_are_accepted(make_client, version) -> None:
    assert make_client(api_version=version).registries.get(RESOURCE_GROUP, REGISTRY).name == REGISTRY


@pytest.mark.parametrize("version", ["2099-01-01", "2017-10-01", "latest"])
def test_versions_outside_the_range_are_400_naming_the_supported_ones(make_client, version) -> None:
    with pytest.raises(HttpResponseError) as info:
        make_client(api_version=version).registries.get(RESOURCE_GROUP, REGISTRY)
    assert info.value.status_code == 400
    assert info.value.error.code == "InvalidApiVersionParameter"
    assert f"'{version}'" in info.value.error.message
    assert "2019-05-01 through 2025-11-01" in info.value.error.message


def test_a_missing_api_version_is_400(arm) -> None:
    response = requests.get(f"{arm.url}{REGISTRY_PATH}", headers={"Authorization": f"Bearer {arm.token}"},
                            verify=str(arm.ca_bundle), timeout=10)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "MissingApiVersionParameter"


def test_loose_mode_skips_only_the_api_version_check(tmp_path, registry) -> None:
    with ArmService(tmp_path, loose=True) as arm:
        arm.add_registry(REGISTRY, registry, subscription_id=SUBSCRIPTION, resource_group=RESOURCE_GROUP)
        headers = {"Authorization": f"Bearer {arm.token}"}
        ok = requests.get(f"{arm.url}{REGISTRY_PATH}?api-version=2099-01-01", headers=headers,
                          verify=str(arm.ca_bundle), timeout=10)
        assert ok.status_code == 200
        missing = requests.delete(f"{arm.url}{REGISTRY_PATH}?api-version=2099-01-01", headers=headers,
                                  verify=str(arm.ca_bundle), timeout=10)
        assert missing.status_code == 501


def test_request_ids_are_returned_and_unsafe_client_ids_are_not_echoed(arm) -> None:
    headers = {"Authorization": f"Bearer {arm.token}", "x-ms-client-request-id": "x" * 101}
    response = requests.get(f"{arm.url}{REGISTRY_PATH}?api-version=2025-11-01", headers=headers,
                            verify=str(arm.ca_bundle), timeout=10)
    assert response.headers["x-ms-request-id"]
    assert "x-ms-client-request-id" not in response.headers
    headers["x-ms-client-request-id"] = "abc-123"
    response = requests.get(f"{arm.url}{REGISTRY_PATH}?api-version=2025-11-01", headers=headers,
                            verify=str(arm.ca_bundle), timeout=10)
    assert response.headers["x-ms-client-request-id"] == "abc-123"


def test_an_oversized_body_is_413_unread(arm) -> None:
    response = requests.post(
        f"{arm.url}{REGISTRY_PATH}/regenerateCredential?api-version=2025-11-01",
        data=b"x" * (2 << 20), headers={"Authorization": f"Bearer {arm.token}"},
        verify=str(arm.ca_bundle), timeout=10,
    )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "RequestEntityTooLarge"
