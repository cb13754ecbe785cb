"""``aml workspace`` and how every command finds its workspace."""

from __future__ import annotations

import json

from aml_core.workspace import Workspace


def test_create_then_show(aml, tmp_path):
    target = tmp_path / "new-ws"
    created = aml.json("workspace", "create", target, "--name", "team", workspace=False)
    assert created["name"] == "team"
    assert created["root"] == str(target.resolve())
    assert Workspace.get(target).name == "team"
    shown = aml.json("--workspace", target, "workspace", "show", workspace=False)
    assert shown == {**created, "models": 0, "model_versions": 0, "services": 0}


def test_show_counts_models_and_versions(aml, model_file):
    aml.json("model", "register", "-n", "m", "-p", model_file)
    aml.json("model", "register", "-n", "m", "-p", model_file)
    aml.json("model", "register", "-n", "n", "-p", model_file)
    shown = aml.json("workspace", "show")
    assert (shown["models"], shown["model_versions"]) == (2, 3)


def test_create_twice_exits_6_unless_exist_ok(aml, tmp_path):
    target = tmp_path / "w"
    assert aml("workspace", "create", target, workspace=False).exit_code == 0
    again = aml("workspace", "create", target, workspace=False)
    assert again.exit_code == 6
    assert "already exists" in again.stderr
    assert aml("workspace", "create", target, "--exist-ok", workspace=False).exit_code == 0


def test_workspace_from_environment_variable(aml, ws):
    result = aml("-o", "json", "workspace", "show", workspace=False, env={"AML_WORKSPACE": str(ws.root)})
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["name"] == "cli-tests"


def test_workspace_found_from_current_directory(aml, ws, monkeypatch):
    (ws.root / "sub").mkdir()
    monkeypatch.chdir(ws.root / "sub")
    assert aml.json("workspace", "show", workspace=False)["root"] == str(ws.root)


def test_no_workspace_anywhere_exits_3_with_the_fix(aml, tmp_path, monkeypatch):
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.chdir(empty)
    result = aml("model", "list", workspace=False)
    assert result.exit_code == 3
    assert result.stderr.startswith("Error (NotFound): No workspace found")
    assert "aml workspace create" in result.stderr


def test_explicit_workspace_that_does_not_exist_exits_3(aml, tmp_path):
    result = aml("--workspace", tmp_path / "nowhere", "model", "list", workspace=False)
    assert result.exit_code == 3
    assert "No workspace at" in result.stderr
