"""Bad input gets a clear error of the right class, and nothing stored is lost."""

from __future__ import annotations

import pytest

from aml_contract_tests.capabilities import requires
from aml_contract_tests.fixtures import SAMPLE_INPUT


@requires("entry_script")
class ErrorContract:
    def test_init_failure_fails_the_deploy_and_keeps_the_traceback(self, aml_deploy, aml_broken_inference_config, aml_workspace):
        from aml_core.errors import ProvisioningFailed
        from aml_core.webservice import Webservice

        with pytest.raises(ProvisioningFailed) as info:
            aml_deploy("contract-broken", aml_broken_inference_config)
        assert info.value.code == "ProvisioningFailed"
        assert "get_logs" in str(info.value)
        service = Webservice(aml_workspace, "contract-broken")
        assert "the model file could not be loaded" in service.get_logs()
        service.delete()

    def test_entry_script_without_run_is_refused_at_deploy(self, aml_workspace, aml_model, aml_deployment_config, tmp_path):
        from aml_core.errors import InvalidConfig
        from aml_core.inference import InferenceConfig
        from aml_core.model import Model

        (tmp_path / "score.py").write_text("def init():\n    pass\n")
        config = InferenceConfig(entry_script="score.py", source_directory=str(tmp_path))
        with pytest.raises(InvalidConfig) as info:
            Model.deploy(aml_workspace, "contract-norun", [aml_model], config, aml_deployment_config("contract-norun"))
        assert info.value.code == "InvalidConfig"
        assert "run()" in str(info.value)

    def test_duplicate_name_without_overwrite_is_a_conflict(self, aml_deploy, aml_inference_config, aml_inference_config_v2):
        from aml_core.errors import Conflict

        service = aml_deploy("contract-dup", aml_inference_config)
        with pytest.raises(Conflict) as info:
            aml_deploy("contract-dup", aml_inference_config_v2)
        assert info.value.code == "Conflict"
        assert "overwrite=True" in str(info.value)
        assert isinstance(service.run(SAMPLE_INPUT), list)

    def test_overwrite_replaces_the_service(self, aml_deploy, aml_inference_config, aml_inference_config_v2):
        aml_deploy("contract-overwrite", aml_inference_config)
        replaced = aml_deploy("contract-overwrite", aml_inference_config_v2, overwrite=True)
        assert replaced.run(SAMPLE_INPUT)["version"] == 2

    def test_a_model_in_use_cannot_be_deleted(self, aml_deploy, aml_inference_config, aml_model):
        from aml_core.errors import Conflict

        aml_deploy("contract-inuse", aml_inference_config)
        with pytest.raises(Conflict) as info:
            aml_model.delete()
        assert "contract-inuse" in str(info.value)

    def test_invalid_service_name_states_the_rule(self, aml_workspace, aml_model, aml_inference_config, aml_deployment_config):
        from aml_core.errors import InvalidConfig
        from aml_core.model import Model

        with pytest.raises(InvalidConfig) as info:
            Model.deploy(aml_workspace, "Bad_Name", [aml_model], aml_inference_config, aml_deployment_config("x"))
        assert "lowercase letters, digits and dashes" in str(info.value)
