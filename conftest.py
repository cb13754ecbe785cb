# The contract suite is a plugin that provider test trees opt into; pytest only accepts
# pytest_plugins in the top-level conftest, so it is declared here for this repository.
# aml_contract_tests.skips turns environment skips into failures under AML_FAIL_ON_ENV_SKIP=1.
pytest_plugins = ["aml_contract_tests.skips", "aml_contract_tests.plugin"]
