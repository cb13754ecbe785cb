import pytest

from aml_provider_local import LocalWebservice


@pytest.fixture
def aml_target_kind():
    return "local"


@pytest.fixture
def aml_deployment_config():
    # No fixed port: tests run in parallel and each service gets a free one.
    return lambda name: LocalWebservice.deploy_configuration()
