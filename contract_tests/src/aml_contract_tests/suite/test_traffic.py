"""aml_traffic: a service's versions share its scoring URI by the percentages set."""

from __future__ import annotations

import pytest
import requests

from aml_contract_tests.capabilities import requires
from aml_contract_tests.fixtures import SAMPLE_INPUT


def _answers(service, n: int) -> set:
    headers = {"Content-Type": "application/json"}
    if service.auth_enabled:
        headers["Authorization"] = f"Bearer {service.get_keys()[0]}"
    elif service.token_auth_enabled:
        headers["Authorization"] = f"Bearer {service.get_token()[0]}"
    seen = set()
    with requests.Session() as session:
        for _ in range(n):
            response = session.post(service.scoring_uri, json=SAMPLE_INPUT, headers=headers, timeout=60)
            assert response.status_code == 200, response.text
            body = response.json()
            seen.add(body.get("version", 1) if isinstance(body, dict) else 1)
    return seen


@requires("traffic_split")
class TrafficContract:
    @pytest.fixture
    def versioned(self, aml_versioned_deploy, aml_inference_config, aml_inference_config_v2):
        service = aml_versioned_deploy("contract-traffic", {"one": aml_inference_config, "two": aml_inference_config_v2})
        yield service
        try:
            service.delete()
        except Exception:  # noqa: BLE001 - best effort: the test may have deleted it
            pass

    def test_unassigned_traffic_goes_to_the_default_version(self, versioned):
        assert _answers(versioned, 30) == {1}

    def test_a_split_moves_all_or_part_of_the_traffic(self, aml_hooks, aml_workspace, versioned):
        from aml_core.records import TrafficSplit

        record = aml_hooks.traffic(workspace=aml_workspace, service=versioned._reload(),
                                   split=TrafficSplit(weights={"two": 100}, default="one"))
        assert record.name == versioned.name
        assert _answers(versioned, 30) == {2}
        aml_hooks.traffic(workspace=aml_workspace, service=versioned._reload(),
                          split=TrafficSplit(weights={"one": 50, "two": 50}, default="one"))
        # 200 requests at 50/50: both answer unless something is badly wrong (p = 2**-199)
        assert _answers(versioned, 200) == {1, 2}

    def test_an_unknown_version_is_not_found_and_nothing_changes(self, aml_hooks, aml_workspace, versioned):
        from aml_core.errors import NotFound
        from aml_core.records import TrafficSplit

        with pytest.raises(NotFound, match="three"):
            aml_hooks.traffic(workspace=aml_workspace, service=versioned._reload(),
                              split=TrafficSplit(weights={"three": 100}, default="one"))
        assert _answers(versioned, 20) == {1}

    def test_percentages_over_100_are_refused(self):
        from aml_core.records import TrafficSplit

        with pytest.raises(ValueError, match="more than 100"):
            TrafficSplit(weights={"one": 60, "two": 50}, default="one")
