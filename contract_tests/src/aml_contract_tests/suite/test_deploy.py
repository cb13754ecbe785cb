"""aml_deploy, aml_status, aml_delete: a model becomes a service that scores."""

from __future__ import annotations

import json

import requests

from aml_contract_tests.capabilities import requires
from aml_contract_tests.fixtures import SAMPLE_INPUT

HEALTHY = {"Healthy", "running"}


@requires("entry_script")
class DeployContract:
    def test_deploy_gives_a_healthy_service_with_a_scoring_uri(self, aml_deploy, aml_inference_config, aml_target_kind):
        service = aml_deploy("contract-deploy", aml_inference_config)
        assert service.state in HEALTHY
        assert service.compute_type == aml_target_kind
        assert service.scoring_uri and service.scoring_uri.startswith("http")

    def test_run_returns_the_scripts_predictions(self, aml_deploy, aml_inference_config):
        service = aml_deploy("contract-run", aml_inference_config)
        result = service.run(json.dumps(SAMPLE_INPUT))
        assert isinstance(result, list) and len(result) == 2
        assert all(isinstance(v, float) for v in result)
        assert result[0] != result[1]

    def test_plain_http_post_to_the_scoring_uri_scores(self, aml_deploy, aml_inference_config):
        service = aml_deploy("contract-http", aml_inference_config)
        headers = {"Content-Type": "application/json"}
        if service.auth_enabled:
            headers["Authorization"] = f"Bearer {service.get_keys()[0]}"
        response = requests.post(service.scoring_uri, json=SAMPLE_INPUT, headers=headers, timeout=60)
        assert response.status_code == 200
        assert response.json() == service.run(SAMPLE_INPUT)

    def test_status_is_readable_from_a_fresh_handle(self, aml_deploy, aml_inference_config, aml_workspace):
        from aml_core.webservice import Webservice

        service = aml_deploy("contract-status", aml_inference_config)
        again = Webservice(aml_workspace, "contract-status")
        assert type(again) is type(service)
        assert again.update_deployment_state() in HEALTHY
        assert [s.name for s in Webservice.list(aml_workspace)] == ["contract-status"]

    def test_delete_stops_the_service_and_forgets_it(self, aml_deploy, aml_inference_config, aml_workspace):
        import pytest

        from aml_core.errors import NotFound
        from aml_core.webservice import Webservice

        service = aml_deploy("contract-delete", aml_inference_config)
        uri = service.scoring_uri
        service.delete()
        with pytest.raises(NotFound):
            Webservice(aml_workspace, "contract-delete")
        # nothing answers any more, or a router in front of the target no longer knows it
        try:
            response = requests.post(uri, json=SAMPLE_INPUT, timeout=10)
        except requests.ConnectionError:
            return
        assert response.status_code == 404, response.text

    def test_repeated_delete_is_harmless(self, aml_deploy, aml_inference_config, capsys):
        service = aml_deploy("contract-redelete", aml_inference_config)
        service.delete()
        service.delete()
        assert "No service with name contract-redelete found to delete." in capsys.readouterr().out
