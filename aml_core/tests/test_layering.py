"""The import-linter contracts name every workspace member in the role it has.

import-linter only checks the packages a contract lists, so a new provider left out of the
lists would be free to import the emulator or another provider. This test reads the
workspace's members from the root ``pyproject.toml`` and fails, naming the member and the
contract, when one is missing.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CONFIG = tomllib.loads((ROOT / "pyproject.toml").read_text())
MEMBERS = CONFIG["tool"]["aml-workspace"]["members"]
LINTER = CONFIG["tool"]["importlinter"]
CONTRACTS = {contract["name"]: contract for contract in LINTER["contracts"]}


def _import_name(member: str) -> str:
    """The one top-level package under ``<member>/src``."""
    packages = [p.parent.name for p in (ROOT / member / "src").glob("*/__init__.py")]
    assert len(packages) == 1, f"{member}/src should hold exactly one package, found {packages}"
    return packages[0]


PACKAGES = {member: _import_name(member) for member in MEMBERS}
PROVIDERS = sorted(pkg for pkg in PACKAGES.values() if pkg.startswith("aml_provider_"))


def _contract(name_start: str) -> dict:
    found = [c for name, c in CONTRACTS.items() if name.startswith(name_start)]
    assert len(found) == 1, f"expected one import-linter contract named {name_start!r}..., found {len(found)}"
    return found[0]


def test_every_member_is_a_root_package_of_the_linter():
    missing = sorted(set(PACKAGES.values()) - set(LINTER["root_packages"]))
    assert not missing, f"add {missing} to [tool.importlinter] root_packages in pyproject.toml"


def test_every_member_is_installed_by_make_venv():
    line = next(l for l in (ROOT / "Makefile").read_text().splitlines() if l.startswith("MEMBERS"))
    installed = set(re.findall(r"-e \./(\S+)", line))
    missing = [m for m in MEMBERS if m not in installed]
    assert not missing, f"add {missing} to MEMBERS in the Makefile"


@pytest.mark.parametrize(("contract", "field"), [
    ("The core imports no provider", "forbidden_modules"),
    ("Providers and the shared Azure library never import the emulator", "source_modules"),
    ("Providers never import each other", "modules"),
    ("The shared Azure library imports no provider", "forbidden_modules"),
    ("The emulator imports no provider", "forbidden_modules"),
    ("The contract suite imports no provider", "forbidden_modules"),
])
def test_every_provider_is_in_each_contract_about_providers(contract, field):
    listed = set(_contract(contract)[field])
    missing = [p for p in PROVIDERS if p not in listed]
    assert not missing, f"add {missing} to {field} of the contract {contract!r}... in pyproject.toml"


def test_the_shared_azure_library_keeps_out_of_the_core_and_the_emulator():
    for contract in ("The core imports no provider", "The emulator imports no provider"):
        assert "aml_azure_common" in _contract(contract)["forbidden_modules"], contract
