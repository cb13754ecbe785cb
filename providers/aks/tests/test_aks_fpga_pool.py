"""An AKS cluster with an FPGA node pool (``vm_size="Standard_PB6s"``), through the provider
and the emulated ARM: created where FPGAs are offered and within the PBS family quota, and
refused with a clear error otherwise (the documents' quota and region rule)."""

from __future__ import annotations

import pytest

from aml_core.compute import ComputeTarget
from aml_core.errors import InvalidConfig, QuotaExceeded
from aml_provider_aks import AksCompute


def fpga_config(location: str, agent_count: int = 1):
    # One PB6s node is 6 vCPUs: below FastProd's 12, so the documents' DevTest purpose
    return AksCompute.provisioning_configuration(vm_size="Standard_PB6s", agent_count=agent_count,
                                                 location=location, cluster_purpose="DevTest")


def test_an_fpga_pool_in_an_fpga_region_is_provisioned(emulator, ws):
    target = ComputeTarget.create(ws, "fpga-aks", fpga_config("eastus"))
    target.wait_for_completion(show_output=False, timeout_sec=60)
    assert target.provisioning_state == "Succeeded"
    assert ComputeTarget(ws, "fpga-aks").record.details["vm_size"] == "Standard_PB6s"


def test_a_region_without_fpgas_is_a_clear_error(emulator, ws):
    target = ComputeTarget.create(ws, "fpga-north", fpga_config("northeurope"))
    with pytest.raises(InvalidConfig, match="eastus, southeastasia, westeurope, westus2"):
        target.wait_for_completion(timeout_sec=60)


def test_more_fpga_nodes_than_the_quota_is_quota_exceeded(emulator, ws):
    target = ComputeTarget.create(ws, "fpga-two", fpga_config("westus2", agent_count=2))
    with pytest.raises(QuotaExceeded, match="Standard PBS Family vCPUs") as caught:
        target.wait_for_completion(timeout_sec=60)
    assert caught.value.code == "QuotaExceeded"
