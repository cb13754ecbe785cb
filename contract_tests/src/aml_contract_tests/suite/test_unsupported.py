"""An operation a target does not declare raises NotSupported naming target and operation."""

from __future__ import annotations

import pytest

from aml_contract_tests.capabilities import requires
from aml_core.errors import NotSupported
from aml_core.records import (
    AuthRequest,
    PackageRequest,
    ProvisionRequest,
    ScaleRequest,
    ServiceRecord,
    TrafficSplit,
)


def lacks(capability: str):
    return pytest.mark.aml_lacks(capability)


class UnsupportedContract:
    @lacks("package")
    def test_package_without_the_capability_is_not_supported(self, aml_hooks, aml_workspace, aml_target_kind, aml_model, aml_inference_config):
        request = PackageRequest(kind=aml_target_kind, models=(aml_model.record,), inference_config=aml_inference_config)
        self._assert_not_supported(lambda: aml_hooks.package(workspace=aml_workspace, request=request), aml_target_kind, "package")

    @lacks("provision")
    def test_provision_without_the_capability_is_not_supported(self, aml_hooks, aml_workspace, aml_target_kind):
        request = ProvisionRequest(kind=aml_target_kind, name="compute", config=None)
        self._assert_not_supported(lambda: aml_hooks.provision(workspace=aml_workspace, request=request), aml_target_kind, "provision")

    @lacks("auth_keys")
    @requires("entry_script")
    def test_keys_without_the_capability_are_not_supported(self, aml_deploy, aml_inference_config, aml_target_kind):
        service = aml_deploy("contract-nokeys", aml_inference_config)
        self._assert_not_supported(service.get_keys, aml_target_kind, "get_keys")
        self._assert_not_supported(lambda: service.regen_key("Primary"), aml_target_kind, "regen_key")

    @lacks("auth_token")
    @requires("entry_script")
    def test_tokens_without_the_capability_are_not_supported(self, aml_deploy, aml_inference_config, aml_target_kind):
        service = aml_deploy("contract-notoken", aml_inference_config)
        self._assert_not_supported(service.get_token, aml_target_kind, "get_token")

    @lacks("scale")
    def test_scale_without_the_capability_is_not_supported(self, aml_hooks, aml_workspace, aml_target_kind):
        record = ServiceRecord(name="contract-noscale", kind=aml_target_kind, state="running")
        self._assert_not_supported(
            lambda: aml_hooks.scale(workspace=aml_workspace, service=record, request=ScaleRequest(num_replicas=2)),
            aml_target_kind, "scale",
        )

    @lacks("traffic_split")
    def test_traffic_without_the_capability_is_not_supported(self, aml_hooks, aml_workspace, aml_target_kind):
        record = ServiceRecord(name="contract-notraffic", kind=aml_target_kind, state="running")
        split = TrafficSplit(weights={"blue": 50}, default="blue")
        self._assert_not_supported(
            lambda: aml_hooks.traffic(workspace=aml_workspace, service=record, split=split), aml_target_kind, "traffic"
        )

    @staticmethod
    def _assert_not_supported(call, kind, operation):
        with pytest.raises(NotSupported) as info:
            call()
        assert info.value.code == "NotSupported"
        assert kind in str(info.value) and operation in str(info.value)
