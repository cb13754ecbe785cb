"""aml_logs and aml_update: what a running service tells and how it changes."""

from __future__ import annotations

from aml_contract_tests.capabilities import requires
from aml_contract_tests.fixtures import SAMPLE_INPUT


@requires("entry_script")
class LifecycleContract:
    @requires("logs")
    def test_logs_show_what_init_printed(self, aml_deploy, aml_inference_config):
        service = aml_deploy("contract-logs", aml_inference_config)
        assert "contract model loaded" in service.get_logs()

    @requires("update")
    def test_update_swaps_in_the_new_entry_script(self, aml_deploy, aml_inference_config, aml_inference_config_v2):
        service = aml_deploy("contract-update", aml_inference_config)
        before = service.run(SAMPLE_INPUT)
        service.update(inference_config=aml_inference_config_v2)
        after = service.run(SAMPLE_INPUT)
        assert after == {"version": 2, "predictions": before}

    @requires("update")
    def test_update_to_a_broken_script_keeps_the_old_version_serving(
        self, aml_deploy, aml_inference_config, aml_broken_inference_config
    ):
        import pytest
        from aml_core.errors import AmlError

        service = aml_deploy("contract-badupdate", aml_inference_config)
        before = service.run(SAMPLE_INPUT)
        with pytest.raises(AmlError) as info:
            service.update(inference_config=aml_broken_inference_config)
        assert "get_logs" in str(info.value)
        assert service.run(SAMPLE_INPUT) == before

    @requires("update")
    def test_update_with_new_model_version_records_it(self, aml_deploy, aml_inference_config, aml_workspace, aml_model_file):
        from aml_core.model import Model

        service = aml_deploy("contract-newmodel", aml_inference_config)
        newer = Model.register(aml_workspace, aml_model_file, "diabetes-ridge")
        service.update(models=[newer])
        assert service.models == [newer.id]
        assert len(service.run(SAMPLE_INPUT)) == 2
