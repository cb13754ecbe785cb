"""The shared contract suite every aml provider runs against itself.

Opt in from your provider's top-level ``conftest.py``::

    pytest_plugins = ["aml_contract_tests.plugin"]

    @pytest.fixture
    def aml_target_kind():
        return "mykind"

    @pytest.fixture
    def aml_deployment_config():
        return lambda name: MyWebservice.deploy_configuration(...)

then, in a test module, ``from aml_contract_tests.suite import *`` (every contract) or
``class TestMine(DeployContract): pass`` (a chosen few). See docs/contract-tests.md.
"""
