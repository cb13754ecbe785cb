"""The installed ``aml`` console script, run as a real process: exit statuses and JSON on stdout."""

from __future__ import annotations

import json

from aml_cli_testkit import run_script


def test_version_and_help(tmp_path):
    version = run_script("--version", cwd=tmp_path)
    assert version.returncode == 0
    assert version.stdout.startswith("aml, version ")
    assert run_script("service", "deploy", "--help", cwd=tmp_path).returncode == 0


def test_model_workflow_json_parses_and_statuses(tmp_path, model_file):
    ws = tmp_path / "ws"
    env = {"AML_WORKSPACE": str(ws)}
    created = run_script("workspace", "create", ws, "-o", "json", cwd=tmp_path)
    assert created.returncode == 0, created.stderr
    assert json.loads(created.stdout)["root"] == str(ws)

    registered = run_script("-o", "json", "model", "register", "--name", "m", "--path", model_file,
                            "--tag", "k=v", env=env, cwd=tmp_path)
    assert registered.returncode == 0, registered.stderr
    assert json.loads(registered.stdout)["id"] == "m:1"
    assert registered.stderr == ""  # JSON mode: no chatter, not even on stderr

    listed = run_script("model", "list", "-o", "json", env=env, cwd=tmp_path)
    assert [m["id"] for m in json.loads(listed.stdout)] == ["m:1"]

    unknown = run_script("-o", "json", "model", "show", "ghost", env=env, cwd=tmp_path)
    assert unknown.returncode == 3
    assert unknown.stdout == ""
    assert unknown.stderr.startswith("Error (NotFound): ")
    assert unknown.stderr.count("\n") == 1  # one line, no traceback

    invalid = run_script("model", "register", "--name", "-bad-", "--path", model_file, env=env, cwd=tmp_path)
    assert invalid.returncode == 6
    assert invalid.stderr.startswith("Error (InvalidConfig): ")

    usage = run_script("model", "list", "--output", "yaml", env=env, cwd=tmp_path)
    assert usage.returncode == 2


def test_no_workspace_exits_3(tmp_path):
    result = run_script("service", "list", cwd=tmp_path)
    assert result.returncode == 3
    assert "aml workspace create" in result.stderr


def test_providers_json_from_the_script(tmp_path):
    result = run_script("plugins", "list", "-o", "json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "local" in {e["name"] for e in json.loads(result.stdout)}
