"""The local provider against the shared contract suite."""

from aml_contract_tests.suite import *  # noqa: F401,F403
