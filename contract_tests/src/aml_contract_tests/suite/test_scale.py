"""aml_scale through ``Webservice.scale``: a fixed count or autoscale bounds, validated before
the target changes, with the service scoring throughout."""

from __future__ import annotations

import time

import pytest

from aml_contract_tests.capabilities import requires
from aml_contract_tests.fixtures import SAMPLE_INPUT

HEALTHY = {"Healthy", "running"}


def _settles(service, timeout: float = 120.0) -> str:
    deadline = time.monotonic() + timeout
    while service.update_deployment_state() not in HEALTHY and time.monotonic() < deadline:
        time.sleep(0.5)
    return service.state


@requires("entry_script")
class ScaleContract:
    @requires("scale")
    def test_a_fixed_count_is_applied_and_the_service_keeps_scoring(self, aml_deploy, aml_inference_config):
        service = aml_deploy("contract-scale", aml_inference_config)
        before = service.run(SAMPLE_INPUT)
        service.scale(num_replicas=2)
        assert service.run(SAMPLE_INPUT) == before
        assert _settles(service) in HEALTHY
        service.scale(num_replicas=1)
        assert _settles(service) in HEALTHY
        assert service.run(SAMPLE_INPUT) == before

    @requires("scale")
    def test_bad_counts_are_refused_and_change_nothing(self, aml_deploy, aml_inference_config):
        from aml_core.errors import InvalidConfig

        service = aml_deploy("contract-badscale", aml_inference_config)
        for bad in (0, -1, True):
            with pytest.raises(InvalidConfig, match="num_replicas"):
                service.scale(num_replicas=bad)
        assert service.update_deployment_state() in HEALTHY
        assert isinstance(service.run(SAMPLE_INPUT), list)

    @requires("autoscale")
    def test_autoscale_bounds_are_applied_and_min_over_max_is_refused(self, aml_deploy, aml_inference_config):
        from aml_core.errors import InvalidConfig

        service = aml_deploy("contract-autoscale", aml_inference_config)
        service.scale(autoscale_enabled=True, autoscale_min_replicas=1, autoscale_max_replicas=2)
        assert _settles(service) in HEALTHY
        with pytest.raises(InvalidConfig, match="cannot be greater than"):
            service.scale(autoscale_enabled=True, autoscale_min_replicas=3, autoscale_max_replicas=2)
        assert isinstance(service.run(SAMPLE_INPUT), list)
