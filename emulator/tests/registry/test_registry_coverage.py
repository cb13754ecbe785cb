"""The coverage table is current, and every item in it has a test named after it."""

from __future__ import annotations

from pathlib import Path

import aml_emulator.registry as registry_pkg
from aml_emulator.registry.coverage import ENDPOINTS, render

HERE = Path(__file__).parent


def test_coverage_file_is_current():
    path = Path(registry_pkg.__file__).parent / "IMPLEMENTATION_COVERAGE.md"
    assert path.read_text() == render(), "regenerate: python -m aml_emulator.registry.coverage > " + str(path)


def test_every_item_has_a_test():
    sources = "\n".join(p.read_text() for p in HERE.glob("test_registry_*.py"))
    missing = [item for item, *_ in ENDPOINTS if f"def test_{item}_" not in sources]
    assert not missing
