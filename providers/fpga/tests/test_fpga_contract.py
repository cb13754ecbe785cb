"""The FPGA target against the shared contract suite, with its honest capabilities.

The target serves converted models over gRPC and runs no entry script, so the contracts that
deploy ``score.py`` and score it over HTTP skip, naming the capability ``entry_script``; so do
update, scale, tokens and traffic, which it does not declare. What runs: the operations it
lacks raise ``NotSupported`` naming target and operation. Its own deploy, status, logs, keys
and delete contract is ``test_fpga_aks.py`` (the documents' flow on the emulated cluster).
"""

import pytest
from aml_contract_tests.suite import *  # noqa: F401,F403


@pytest.fixture
def aml_target_kind():
    return "fpga"


@pytest.fixture
def aml_deployment_config():
    from aml_provider_aks import AksWebservice

    return lambda name: AksWebservice.deploy_configuration(autoscale_enabled=False, num_replicas=1)
