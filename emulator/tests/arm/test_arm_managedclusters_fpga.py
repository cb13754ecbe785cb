"""FPGA node pools (Standard_PB6s) through the real azure-mgmt-containerservice client: only
in the regions that offered them, and within the PBS family vCPU quota."""

from __future__ import annotations

import pytest
from arm_testing import RESOURCE_GROUP, SCOPES, SUBSCRIPTION, FixedToken

pytest.importorskip("azure.mgmt.containerservice")


@pytest.fixture
def aks_client(arm):
    import yaml
    from azure.mgmt.containerservice import ContainerServiceClient

    kubeconfig = {"apiVersion": "v1", "kind": "Config",
                  "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:1"}}]}
    arm.add_kubernetes(lambda: yaml.safe_dump(kubeconfig))
    return ContainerServiceClient(FixedToken(arm.token), SUBSCRIPTION, base_url=arm.url,
                                  credential_scopes=SCOPES, connection_verify=str(arm.ca_bundle),
                                  retry_total=0, polling_interval=0.2)


def fpga_cluster(location: str, count: int) -> dict:
    return {"location": location, "properties": {"dnsPrefix": "fpga", "agentPoolProfiles": [
        {"name": "fpgapool", "count": count, "vmSize": "Standard_PB6s", "mode": "System"}]}}


def test_one_fpga_node_in_an_fpga_region_is_created(aks_client):
    cluster = aks_client.managed_clusters.begin_create_or_update(
        RESOURCE_GROUP, "fpga1", fpga_cluster("eastus", 1)).result(timeout=30)
    assert cluster.provisioning_state == "Succeeded"
    assert cluster.agent_pool_profiles[0].vm_size == "Standard_PB6s"


def test_a_region_without_fpgas_is_refused_naming_the_regions(aks_client):
    from azure.core.exceptions import HttpResponseError

    with pytest.raises(HttpResponseError) as caught:
        aks_client.managed_clusters.begin_create_or_update(
            RESOURCE_GROUP, "fpga2", fpga_cluster("northeurope", 1))
    assert caught.value.error.code == "InvalidParameter"
    assert "eastus, southeastasia, westeurope, westus2" in caught.value.error.message


def test_more_fpga_vcpus_than_the_quota_is_quota_exceeded(aks_client):
    from azure.core.exceptions import HttpResponseError

    with pytest.raises(HttpResponseError) as caught:
        aks_client.managed_clusters.begin_create_or_update(
            RESOURCE_GROUP, "fpga3", fpga_cluster("westeurope", 2))
    assert caught.value.error.code == "QuotaExceeded"
    assert "Standard PBS Family vCPUs" in caught.value.error.message
    assert "Current Limit: 6, Additional Required: 12" in caught.value.error.message
    assert [c.name for c in aks_client.managed_clusters.list_by_resource_group(
        RESOURCE_GROUP)] == []


def test_the_cluster_is_told_the_fpgas_of_the_pools_and_forgets_them_on_delete(arm):
    """ARM tells the emulated cluster how many FPGAs its managed clusters' PB pools hold (one
    per VM), so its node advertises ``microsoft.com/fpga``; deleting the cluster takes them."""
    import yaml
    from azure.mgmt.containerservice import ContainerServiceClient

    advertised: list[dict] = []
    arm.add_kubernetes(lambda: yaml.safe_dump({"apiVersion": "v1", "kind": "Config"}),
                       node_resources=advertised.append)
    client = ContainerServiceClient(FixedToken(arm.token), SUBSCRIPTION, base_url=arm.url,
                                    credential_scopes=SCOPES, connection_verify=str(arm.ca_bundle),
                                    retry_total=0, polling_interval=0.2)
    client.managed_clusters.begin_create_or_update(
        RESOURCE_GROUP, "cpu", {"location": "eastus", "properties": {"agentPoolProfiles": [
            {"name": "cpu", "count": 3, "vmSize": "Standard_D3_v2"}]}}).result(timeout=30)
    assert advertised[-1] == {"microsoft.com/fpga": 0}
    client.managed_clusters.begin_create_or_update(
        RESOURCE_GROUP, "fpga1", fpga_cluster("eastus", 1)).result(timeout=30)
    assert advertised[-1] == {"microsoft.com/fpga": 1}
    # a cluster attached later (the emulator restarted with clusters stored) is told at once
    later: list[dict] = []
    arm.add_kubernetes(lambda: "", node_resources=later.append)
    assert later == [{"microsoft.com/fpga": 1}]
    client.managed_clusters.begin_delete(RESOURCE_GROUP, "fpga1").result(timeout=30)
    assert later[-1] == {"microsoft.com/fpga": 0}
