"""The AKS provider against the shared contract suite, on the emulator's cluster."""

import pytest
from aml_contract_tests.suite import *


@pytest.fixture
def aml_target_kind():
    return "aks"


@pytest.fixture
def aml_deployment_config():
    from aml_provider_aks import AksWebservice

    return lambda name: AksWebservice.deploy_configuration(num_replicas=1)


@pytest.fixture
def aml_token_auth_deployment_config():
    from aml_provider_aks import AksWebservice

    return lambda name: AksWebservice.deploy_configuration(num_replicas=1, auth_enabled=False, token_auth_enabled=True)
