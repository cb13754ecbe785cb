"""``aml providers`` and its alias ``aml plugins list``."""

from __future__ import annotations

import json

from aml_core.plugins import get_plugin_manager


def _by_name(entries):
    return {e["name"]: e for e in entries}


def test_lists_the_local_provider_with_kinds_hooks_and_capabilities(aml):
    entries = _by_name(aml.json("providers", workspace=False))
    local = entries["local"]
    assert local["distribution"] == "aml-provider-local"
    assert local["status"] == "loaded"
    assert local["builtin"] is False
    assert [k["name"] for k in local["target_kinds"]] == ["local"]
    assert {"update", "logs"} <= set(local["target_kinds"][0]["capabilities"])
    assert "scale" not in local["target_kinds"][0]["capabilities"]
    assert {"aml_target_kinds", "aml_deploy", "aml_delete", "aml_status"} <= set(local["hooks"])


def test_versions_and_hooks_agree_with_pluggy(aml):
    pm = get_plugin_manager()
    expected = {pm.get_name(p): (d.project_name, d.version) for p, d in pm.list_plugin_distinfo()}
    entries = _by_name(aml.json("providers", workspace=False))
    for name, (dist, version) in expected.items():
        assert (entries[name]["distribution"], entries[name]["version"]) == (dist, version)
    for plugin in pm.get_plugins():
        hooks = sorted(c.name for c in pm.get_hookcallers(plugin))
        assert entries[pm.get_name(plugin)]["hooks"] == hooks


def test_builtin_registry_is_listed_as_part_of_the_core(aml):
    core = _by_name(aml.json("providers", workspace=False))["aml_core.registry"]
    assert core["builtin"] is True
    assert core["distribution"] == "aml-core"
    assert core["hooks"] == ["aml_register"]
    assert core["target_kinds"] == []


def test_plugins_list_is_the_same_listing(aml):
    assert aml.json("plugins", "list", workspace=False) == aml.json("providers", workspace=False)


def test_table_output(aml):
    result = aml("providers", workspace=False)
    assert result.exit_code == 0
    for text in ("local", "aml-provider-local", "deploy", "logs"):
        assert text in result.stdout


def test_blocked_provider_is_shown_as_blocked(aml):
    result = aml("-o", "json", "providers", workspace=False, env={"AML_DISABLE_PLUGINS": "local"})
    assert result.exit_code == 0, result.stderr
    local = _by_name(json.loads(result.stdout))["local"]
    assert local["status"] == "blocked"
    assert local["hooks"] == [] and local["target_kinds"] == []
    table = aml("providers", workspace=False, env={"AML_DISABLE_PLUGINS": "local"})
    assert "blocked" in table.stdout
    every = aml("providers", workspace=False, env={"AML_DISABLE_PLUGINS": "local,aks,fpga"})
    assert "No target provider is installed" in every.stderr

