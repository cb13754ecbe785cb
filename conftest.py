# The contract suite is a plugin that provider test trees opt into; pytest only accepts
# pytest_plugins in the top-level conftest, so it is declared here for this repository.
pytest_plugins = ["aml_contract_tests.plugin"]
