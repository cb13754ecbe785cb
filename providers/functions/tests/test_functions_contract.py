"""The Functions provider (HTTP-triggered function apps) against the shared contract suite, on the
emulator's ARM, registry and storage."""

from aml_contract_tests.suite import *  # noqa: F401,F403
