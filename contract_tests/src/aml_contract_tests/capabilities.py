"""Capability gating: a contract test that needs a capability the target lacks is skipped
with a reason that names both, never silently passed."""

from __future__ import annotations

import pytest

#: capability -> what a target without it must still do (raise NotSupported)
CAPABILITY_OPERATIONS = {
    "package": "package",
    "provision": "provision",
    "auth_keys": "get_keys",
    "auth_token": "get_token",
    "scale": "scale",
    "traffic_split": "traffic",
}


def requires(capability: str):
    """Mark a test (or class) as needing ``capability``."""
    return pytest.mark.aml_requires(capability)
