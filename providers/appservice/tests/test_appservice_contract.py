"""The App Service provider against the shared contract suite, on the emulator's ARM and registry."""

from aml_contract_tests.suite import *  # noqa: F401,F403
