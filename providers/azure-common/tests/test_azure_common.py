"""aml_azure_common against the emulated ARM, through the real azure-mgmt clients: clients
from the cloud profile, long-running waits with progress, error translation, keys."""

from __future__ import annotations

import sys

import attrs
import pytest

from aml_azure_common import arm_errors, credential_for, management_client, new_service_key, translate, wait_for
from aml_core.errors import AuthError, DeploymentTimeout, InvalidConfig, NotFound, ProvisioningFailed, QuotaExceeded
from aml_emulator.arm import OperationScript

CLUSTERS = "Microsoft.ContainerService/managedClusters"
BODY = {"location": "westus", "properties": {"dnsPrefix": "c", "agentPoolProfiles": [
    {"name": "agentpool", "count": 1, "vmSize": "Standard_D3_v2", "mode": "System"}]}}


def _containerservice(profile, **options):
    from azure.mgmt.containerservice import ContainerServiceClient

    return management_client(ContainerServiceClient, profile, **options)


def test_a_client_from_the_profile_reaches_arm_over_its_ca(profile):
    from azure.mgmt.containerregistry import ContainerRegistryManagementClient

    client = management_client(ContainerRegistryManagementClient, profile)
    registry = client.registries.get(profile.resource_group, profile.registry_name)
    assert registry.login_server == profile.registry_login_server


def test_the_profile_is_loaded_when_none_is_given(profile, tmp_path, monkeypatch):
    from azure.mgmt.containerregistry import ContainerRegistryManagementClient

    profile.save(tmp_path)
    monkeypatch.setenv("AML_PROFILE_DIR", str(tmp_path))
    monkeypatch.setenv("AML_PROFILE", profile.name)
    client = management_client(ContainerRegistryManagementClient)
    assert [r.name for r in client.registries.list()] == [profile.registry_name]


def test_without_a_token_and_without_azure_identity_the_error_says_what_to_install(profile, monkeypatch):
    monkeypatch.setitem(sys.modules, "azure.identity", None)
    with pytest.raises(InvalidConfig, match=r"aml-azure-common\[identity\]"):
        credential_for(attrs.evolve(profile, arm_token=None))


def test_wait_for_reports_each_status_and_returns_the_result(profile, emulator):
    emulator.script_arm_operations(CLUSTERS, OperationScript.after_polls(2))
    client = _containerservice(profile)
    seen: list[str] = []
    cluster = wait_for(client.managed_clusters.begin_create_or_update(profile.resource_group, "w1", BODY),
                       what="Creating cluster 'w1'", progress=seen.append)
    assert cluster.provisioning_state == "Succeeded"
    assert seen == ["Creating cluster 'w1': InProgress", "Creating cluster 'w1': Succeeded"]


def test_wait_for_gives_up_at_its_deadline_and_says_so(profile, emulator, clock):
    emulator.script_arm_operations(CLUSTERS, OperationScript.after_seconds(3600))
    client = _containerservice(profile)
    poller = client.managed_clusters.begin_create_or_update(profile.resource_group, "w2", BODY)
    with pytest.raises(DeploymentTimeout, match="did not finish within 0.3 s"):
        wait_for(poller, what="Creating cluster 'w2'", timeout=0.3)
    clock.now += 3600
    assert poller.result(timeout=30).provisioning_state == "Succeeded"


def test_a_quota_failure_becomes_quota_exceeded_from_the_azure_error(profile, emulator):
    from azure.core.exceptions import HttpResponseError

    emulator.script_arm_operations(CLUSTERS, OperationScript.failing(
        "ResourceQuotaExceeded", "Operation results in exceeding quota limits of Core."))
    client = _containerservice(profile)
    with pytest.raises(QuotaExceeded, match="exceeding quota limits of Core") as info:
        with arm_errors("Creating cluster 'w3'"):
            wait_for(client.managed_clusters.begin_create_or_update(profile.resource_group, "w3", BODY),
                     what="Creating cluster 'w3'")
    assert info.value.code == "QuotaExceeded"
    assert isinstance(info.value.__cause__, HttpResponseError)


def test_an_unknown_failure_code_is_provisioning_failed(profile, emulator):
    emulator.script_arm_operations(CLUSTERS, OperationScript.failing("InternalServerError", "The node was lost."))
    client = _containerservice(profile)
    with pytest.raises(ProvisioningFailed, match=r"Creating cluster 'w4': The node was lost. \(InternalServerError\)"):
        with arm_errors("Creating cluster 'w4'"):
            client.managed_clusters.begin_create_or_update(profile.resource_group, "w4", BODY).result()


def test_a_missing_resource_is_not_found_with_the_fix(profile):
    client = _containerservice(profile)
    with pytest.raises(NotFound, match="'nope'.*Check the group") as info:
        with arm_errors("Reading cluster 'nope'", fix="Check the group."):
            client.managed_clusters.get(profile.resource_group, "nope")
    assert info.value.code == "NotFound"


def test_a_refused_token_is_an_auth_error_naming_the_profile_fix(profile):
    client = _containerservice(attrs.evolve(profile, arm_token="not-a-token"), retry_total=0)
    with pytest.raises(AuthError, match="aml emulator start"):
        with arm_errors("Listing clusters"):
            list(client.managed_clusters.list())


def test_translate_leaves_our_own_errors_alone():
    error = NotFound("already ours")
    assert translate(error, "anything") is error
    with pytest.raises(ValueError):  # not an Azure error: not ours to translate
        with arm_errors("x"):
            raise ValueError("boom")


def test_service_keys_are_random_and_header_safe():
    keys = {new_service_key() for _ in range(50)}
    assert len(keys) == 50
    assert all(len(key) == 32 and key.replace("-", "").replace("_", "").isalnum() for key in keys)
