"""``Microsoft.ContainerService/managedClusters`` through the real azure-mgmt-containerservice
client: a long-running create (201 + Azure-AsyncOperation, Creating → Succeeded), get, list,
user credentials (the emulated cluster's kubeconfig, which kubectl accepts), delete."""

from __future__ import annotations

import base64
import subprocess
import time

import pytest
import yaml
from arm_testing import RESOURCE_GROUP, SCOPES, SUBSCRIPTION, FixedToken

from aml_emulator.arm import ArmService

pytest.importorskip("azure.mgmt.containerservice")


@pytest.fixture
def aks_arm(arm: ArmService, tmp_path):
    """The ARM service backed by a (fake) cluster kubeconfig; the real one is tested via Emulator."""
    kubeconfig = {"apiVersion": "v1", "kind": "Config", "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:1"}}]}
    arm.add_kubernetes(lambda: yaml.safe_dump(kubeconfig))
    return arm


@pytest.fixture
def aks_client(aks_arm: ArmService):
    from azure.mgmt.containerservice import ContainerServiceClient

    return ContainerServiceClient(FixedToken(aks_arm.token), SUBSCRIPTION, base_url=aks_arm.url,
                                  credential_scopes=SCOPES, connection_verify=str(aks_arm.ca_bundle),
                                  retry_total=0, polling_interval=0.2)


def _cluster_body(count: int = 3) -> dict:
    return {"location": "westus", "tags": {"purpose": "FastProd"},
            "properties": {"dnsPrefix": "aks1", "agentPoolProfiles": [
                {"name": "agentpool", "count": count, "vmSize": "Standard_D3_v2", "mode": "System"}]}}


def test_create_is_long_running_and_ends_succeeded(aks_client):
    poller = aks_client.managed_clusters.begin_create_or_update(RESOURCE_GROUP, "aks1", _cluster_body())
    first = aks_client.managed_clusters.get(RESOURCE_GROUP, "aks1")
    assert first.provisioning_state in ("Creating", "Succeeded")
    cluster = poller.result(timeout=30)
    assert cluster.provisioning_state == "Succeeded"
    assert cluster.agent_pool_profiles[0].count == 3
    assert cluster.agent_pool_profiles[0].vm_size == "Standard_D3_v2"
    assert cluster.tags == {"purpose": "FastProd"}
    assert [c.name for c in aks_client.managed_clusters.list_by_resource_group(RESOURCE_GROUP)] == ["aks1"]


def test_create_answers_201_with_an_async_operation_header(aks_arm):
    import requests

    url = (f"{aks_arm.url}/subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP}/providers/"
           f"Microsoft.ContainerService/managedClusters/raw1")
    headers = {"Authorization": f"Bearer {aks_arm.token}"}
    response = requests.put(url, params={"api-version": "2024-05-01"}, json=_cluster_body(1), headers=headers,
                            verify=str(aks_arm.ca_bundle), timeout=10)
    assert response.status_code == 201
    assert response.json()["properties"]["provisioningState"] == "Creating"
    status_url = response.headers["Azure-AsyncOperation"]
    deadline = time.monotonic() + 10
    status = None
    while time.monotonic() < deadline:
        status = requests.get(status_url, headers=headers, verify=str(aks_arm.ca_bundle), timeout=10).json()["status"]
        if status != "InProgress":
            break
        time.sleep(0.1)
    assert status == "Succeeded"


def test_user_credentials_are_the_clusters_kubeconfig(aks_client):
    aks_client.managed_clusters.begin_create_or_update(RESOURCE_GROUP, "aks2", _cluster_body()).result(timeout=30)
    creds = aks_client.managed_clusters.list_cluster_user_credentials(RESOURCE_GROUP, "aks2")
    config = yaml.safe_load(creds.kubeconfigs[0].value)
    assert config["clusters"][0]["cluster"]["server"] == "https://127.0.0.1:1"


def test_get_of_a_missing_cluster_is_resource_not_found(aks_client):
    from azure.core.exceptions import ResourceNotFoundError

    with pytest.raises(ResourceNotFoundError) as info:
        aks_client.managed_clusters.get(RESOURCE_GROUP, "nope")
    assert info.value.error.code == "ResourceNotFound"


def test_delete_removes_it_and_a_second_delete_is_harmless(aks_client):
    from azure.core.exceptions import ResourceNotFoundError

    aks_client.managed_clusters.begin_create_or_update(RESOURCE_GROUP, "aks3", _cluster_body()).result(timeout=30)
    aks_client.managed_clusters.begin_delete(RESOURCE_GROUP, "aks3").result(timeout=30)
    with pytest.raises(ResourceNotFoundError):
        aks_client.managed_clusters.get(RESOURCE_GROUP, "aks3")
    aks_client.managed_clusters.begin_delete(RESOURCE_GROUP, "aks3").result(timeout=30)


def test_a_create_without_location_is_refused(aks_client):
    from azure.core.exceptions import HttpResponseError

    with pytest.raises(HttpResponseError) as info:
        aks_client.managed_clusters.begin_create_or_update(
            RESOURCE_GROUP, "aks4", {"properties": {"agentPoolProfiles": []}}).result(timeout=30)
    assert info.value.error.code == "LocationRequired"


def test_the_emulator_hands_out_a_kubeconfig_kubectl_accepts(tmp_path):
    from azure.mgmt.containerservice import ContainerServiceClient

    from aml_emulator import Emulator

    with Emulator() as emu:
        client = ContainerServiceClient(FixedToken(emu.arm_token), emu.subscription_id, base_url=emu.arm.url,
                                        credential_scopes=SCOPES, connection_verify=str(emu.ca_bundle),
                                        polling_interval=0.2)
        client.managed_clusters.begin_create_or_update(emu.resource_group, "aks", _cluster_body()).result(timeout=30)
        creds = client.managed_clusters.list_cluster_user_credentials(emu.resource_group, "aks")
        path = tmp_path / "kubeconfig"
        path.write_bytes(creds.kubeconfigs[0].value)
        out = subprocess.run(["kubectl", "--kubeconfig", str(path), "--cache-dir", str(tmp_path / "cache"),
                              "get", "namespaces", "-o", "name"], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        assert "namespace/default" in out.stdout
        assert base64.b64encode(emu.arm_token.encode()).decode() not in out.stdout
