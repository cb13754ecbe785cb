"""The pytest plugin: fixtures, capability gating and the ``--aml-provider`` option.

It is opt-in (``pytest_plugins = ["aml_contract_tests.plugin"]``) and does nothing to
tests that do not use its fixtures or markers.
"""

from __future__ import annotations

import pytest

from aml_contract_tests.fixtures import *  # noqa: F401,F403  (the fixtures are the plugin's API)
from aml_contract_tests.skips import NOT_APPLICABLE, UNSUPPORTED


def pytest_addoption(parser):
    group = parser.getgroup("aml", "aml provider contract suite")
    group.addoption(
        "--aml-provider",
        default=None,
        metavar="KIND",
        help="run the contract suite against this installed target kind (overrides the aml_target_kind fixture default)",
    )


def pytest_configure(config):
    config.addinivalue_line("markers", "aml_requires(capability): the test needs this target capability")
    config.addinivalue_line("markers", "aml_lacks(capability): the test checks what a target without it does")


@pytest.fixture(autouse=True)
def _aml_capability_gate(request):
    """Skip, with a reason naming target and capability, when a gated test does not apply."""
    needs = [m.args[0] for m in request.node.iter_markers("aml_requires")]
    lacks = [m.args[0] for m in request.node.iter_markers("aml_lacks")]
    if not needs and not lacks:
        return
    target = request.getfixturevalue("aml_target")
    for capability in needs:
        if not getattr(target.capabilities, capability):
            pytest.skip(f"{UNSUPPORTED} target {target.name!r} does not declare capability {capability!r}")
    for capability in lacks:
        if getattr(target.capabilities, capability):
            pytest.skip(f"{NOT_APPLICABLE} target {target.name!r} declares {capability!r}; its own contract covers it")
