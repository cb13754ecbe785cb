"""AksEndpoint (target kind ``aksendpoint``) against the contract suite's traffic part."""

import pytest
from aml_contract_tests.suite import TestTrafficContract  # noqa: F401


@pytest.fixture
def aml_target_kind():
    return "aksendpoint"


@pytest.fixture
def aml_deployment_config():
    from aml_provider_aks import AksEndpoint

    return lambda name: AksEndpoint.deploy_configuration(version_name="v1", num_replicas=1)


@pytest.fixture
def aml_versioned_deploy(aml_workspace, aml_model, aml_deployment_target):
    from aml_core.model import Model
    from aml_provider_aks import AksEndpoint

    def deploy(name, versions):
        (first, inference), *rest = versions.items()
        endpoint = Model.deploy(aml_workspace, name, [aml_model], inference,
                                AksEndpoint.deploy_configuration(version_name=first, num_replicas=1),
                                aml_deployment_target)
        endpoint.wait_for_deployment()
        for version, config in rest:
            endpoint.create_version(version, inference_config=config, num_replicas=1)
        return endpoint

    return deploy
