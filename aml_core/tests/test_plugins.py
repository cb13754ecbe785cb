"""Provider discovery, dispatch and capability checks."""

from __future__ import annotations

import types

import pluggy
import pytest

from aml_core import Capabilities, TargetKind, hookimpl
from aml_core.errors import Conflict, NoProviderError, NotSupported
from aml_core.hookspecs import PROJECT_NAME
from aml_core.plugins import Hooks, get_plugin_manager
from aml_core.records import ScaleRequest, ServiceRecord


def _provider(name: str, kind: str, **caps):
    module = types.ModuleType(name)

    @hookimpl
    def aml_target_kinds(add):
        add(TargetKind(name=kind, provider=name, capabilities=Capabilities(**caps)))

    @hookimpl
    def aml_status(workspace, service):
        if service.kind != kind:
            return None
        return service

    module.aml_target_kinds = aml_target_kinds
    module.aml_status = aml_status
    return module


def test_installed_providers_are_found_through_entry_points():
    hooks = Hooks(get_plugin_manager())
    assert "local" in hooks.kinds
    assert hooks.kinds["local"].provider == "aml-provider-local"


def test_a_misspelled_hook_fails_at_start_up():
    module = types.ModuleType("typo_provider")

    @hookimpl
    def aml_deplyo(workspace, spec):  # noqa: the typo is the point
        return None

    module.aml_deplyo = aml_deplyo
    pm = get_plugin_manager(load_entrypoints=False)
    pm.register(module)
    with pytest.raises(pluggy.PluginValidationError, match="aml_deplyo"):
        pm.check_pending()


def test_two_providers_for_one_kind_are_refused_naming_both():
    pm = get_plugin_manager(load_entrypoints=False)
    pm.register(_provider("first", "same"))
    pm.register(_provider("second", "same"))
    with pytest.raises(Conflict, match="first and second"):
        Hooks(pm)


def test_an_unknown_kind_names_the_installed_providers_and_the_fix():
    pm = get_plugin_manager(load_entrypoints=False)
    pm.register(_provider("only", "mine"))
    hooks = Hooks(pm)
    with pytest.raises(NoProviderError) as info:
        hooks.status(workspace=None, service=ServiceRecord(name="s", kind="aks", state="x"))
    assert "pip install aml-provider-aks" in str(info.value) and "mine" in str(info.value)


def test_a_missing_capability_raises_not_supported_before_the_provider_is_called():
    pm = get_plugin_manager(load_entrypoints=False)
    pm.register(_provider("only", "mine", scale=False))
    with pytest.raises(NotSupported) as info:
        Hooks(pm).scale(workspace=None, service=ServiceRecord(name="s", kind="mine", state="x"),
                        request=ScaleRequest(num_replicas=2))
    assert info.value.code == "NotSupported"
    assert "'mine'" in str(info.value) and "scale" in str(info.value)


def test_dispatch_goes_to_the_provider_of_the_kind():
    pm = get_plugin_manager(load_entrypoints=False)
    pm.register(_provider("p1", "one"))
    pm.register(_provider("p2", "two"))
    record = ServiceRecord(name="s", kind="two", state="x")
    assert Hooks(pm).status(workspace=None, service=record) is record


def test_disable_plugins_blocks_a_provider(monkeypatch):
    monkeypatch.setenv("AML_DISABLE_PLUGINS", "local")
    assert "local" not in Hooks(get_plugin_manager()).kinds


def test_every_hook_is_documented_with_the_template():
    pm = pluggy.PluginManager(PROJECT_NAME)
    from aml_core import hookspecs

    pm.add_hookspecs(hookspecs)
    for name in dir(pm.hook):
        if not name.startswith("aml_"):
            continue
        doc = getattr(hookspecs, name).__doc__
        assert ":returns:" in doc and "Dispatch:" in doc and ":raises" in doc and "versionadded" in doc, name


def test_docs_have_one_section_per_hook_with_its_signature():
    import inspect
    from pathlib import Path

    from aml_core import hookspecs

    text = (Path(__file__).resolve().parents[2] / "docs" / "hooks.md").read_text()
    for name, fn in vars(hookspecs).items():
        if name.startswith("aml_") and callable(fn):
            assert f"## `{name}{inspect.signature(fn)}`" in text, f"docs/hooks.md lacks a section for {name}"


def test_a_provider_that_fails_to_import_is_named_with_the_fix(tmp_path, monkeypatch):
    import sys

    from aml_core.errors import AmlError

    dist = tmp_path / "aml_provider_broken-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: aml-provider-broken\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[aml.providers]\nbroken = aml_provider_broken\n")
    (tmp_path / "aml_provider_broken.py").write_text("raise RuntimeError('missing native library')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(AmlError, match="missing native library.*AML_DISABLE_PLUGINS"):
        get_plugin_manager()
    monkeypatch.setenv("AML_DISABLE_PLUGINS", "broken")
    assert "local" in Hooks(get_plugin_manager()).kinds
    sys.modules.pop("aml_provider_broken", None)
