"""In CI an environment skip is a failure; a capability skip stays a skip.

Load it with ``pytest_plugins = ["aml_contract_tests.skips"]`` (this repository's root
conftest does). With ``AML_FAIL_ON_ENV_SKIP=1`` in the environment (``.ci/run`` and, as
root, ``make test`` set it) every skipped test fails unless its reason starts with one of
:data:`CAPABILITY_SKIP_PREFIXES`, which the contract suite's capability gate uses: a target
that does not do something by design is not a broken machine. Any other skip — a missing
tool, package or privilege — means the run did not test what it claims to, so it fails,
naming what to install. Without the variable nothing changes.
"""

from __future__ import annotations

import os

import pytest

ENV_VAR = "AML_FAIL_ON_ENV_SKIP"
#: the target does not declare the capability the test needs
UNSUPPORTED = "unsupported:"
#: the target declares the capability whose absence the test checks
NOT_APPLICABLE = "not applicable:"
#: reasons that mark a capability skip, which stays a skip under :data:`ENV_VAR`
CAPABILITY_SKIP_PREFIXES = (UNSUPPORTED, NOT_APPLICABLE)


def _enabled() -> bool:
    return os.environ.get(ENV_VAR, "") not in ("", "0", "false", "False")


def skip_reason(report: pytest.TestReport) -> str:
    longrepr = report.longrepr
    text = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
    return text.removeprefix("Skipped: ")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    report = yield
    if report.skipped and _enabled() and not hasattr(report, "wasxfail"):
        reason = skip_reason(report)
        if not reason.startswith(CAPABILITY_SKIP_PREFIXES):
            report.outcome = "failed"
            report.longrepr = (f"{ENV_VAR}=1: an environment skip fails this run (install what it names, "
                               f"or unset {ENV_VAR} locally): {reason}")
    return report
