"""docs/porting.md stays true: its import table's modules import, every name it marks yes or
partial resolves from the module it gives, and every name it marks no does not."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "porting.md"
_NAME_ROW = re.compile(r"^\| `([\w.]+)` \| `([\w.]+)` \| (yes|partial|no) \|", re.M)
_IMPORT_ROW = re.compile(r"^\| `azureml[\w./ `]*` \| (.+) \|$", re.M)


def _rows() -> list[tuple[str, str, str]]:
    rows = _NAME_ROW.findall(DOC.read_text())
    assert len(rows) > 50, "the names table of docs/porting.md did not parse"
    return rows


def _resolve(module_name: str, path: str) -> object:
    """The object ``module.path`` names; AttributeError/ImportError when there is none."""
    found: object = importlib.import_module(module_name)
    for part in path.split("."):
        found = getattr(found, part)
    return found


@pytest.mark.parametrize("name, module, status", [r for r in _rows() if r[2] != "no"], ids=lambda v: str(v))
def test_supported_names_resolve(name, module, status):
    assert _resolve(module, name) is not None


@pytest.mark.parametrize("name, module, status", [r for r in _rows() if r[2] == "no"], ids=lambda v: str(v))
def test_unsupported_names_do_not(name, module, status):
    with pytest.raises((AttributeError, ImportError)):
        _resolve(module, name)


def test_every_module_of_the_import_table_imports():
    modules = set()
    for cell in _IMPORT_ROW.findall(DOC.read_text()):
        modules.update(re.findall(r"`(aml_[\w.]+)`", cell))
    assert len(modules) >= 9
    for module in sorted(modules):
        importlib.import_module(module)


def test_names_the_documents_use_are_listed():
    listed = {name for name, _module, _status in _rows()}
    used_by_the_guides = {"Workspace.from_config", "Workspace.get_details", "Workspace.subscription_id",
                          "Model.register", "Model.deploy", "Environment.get", "Environment.build_local",
                          "CondaDependencies.create", "ContainerImage.image_configuration", "ContainerImage.create",
                          "AksCompute.provisioning_configuration", "AksCompute.attach_configuration",
                          "ComputeTarget.create", "ComputeTarget.attach", "AksEndpoint.create_version",
                          "AksEndpoint.update_version", "AksEndpoint.delete_version",
                          "Webservice.deploy_from_image", "Webservice.update", "LocalWebservice.deploy_configuration"}
    assert used_by_the_guides <= listed, sorted(used_by_the_guides - listed)
