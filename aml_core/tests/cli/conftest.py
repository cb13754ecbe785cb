"""Fixtures for the ``aml`` CLI tests.

``aml`` runs the CLI in-process with click's CliRunner against a fresh workspace (stdout and
stderr kept apart, exit status as the console script would return it); ``aml_cli_testkit.run_script``
runs the installed console script as a real subprocess. ``services`` deletes every service a
test deployed, so no scoring process outlives its test.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from aml_core.cli import cli
from aml_core.workspace import Workspace


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch, tmp_path):
    """No workspace, debug or terminal setting leaks in from the developer's shell (or xdist)."""
    for name in ("AML_WORKSPACE", "AML_DEBUG", "AML_DISABLE_PLUGINS", "AML_TRACE_PLUGINS", "COLUMNS", "LINES",
                 "FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "NO_COLOR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def ws(tmp_path) -> Workspace:
    return Workspace.create(tmp_path / "ws", "cli-tests")


class Invoker:
    def __init__(self, ws: Workspace) -> None:
        self.ws = ws
        self.runner = CliRunner()

    def __call__(self, *args, input=None, env=None, workspace=True):
        argv = (["--workspace", str(self.ws.root)] if workspace else []) + [str(a) for a in args]
        return self.runner.invoke(cli, argv, input=input, env=env, catch_exceptions=False)

    def json(self, *args, **kwargs):
        """Run with ``-o json``; assert success and return the parsed stdout."""
        result = self(*args, "-o", "json", **kwargs)
        assert result.exit_code == 0, (result.exit_code, result.stdout, result.stderr)
        return json.loads(result.stdout)


@pytest.fixture
def aml(ws) -> Invoker:
    return Invoker(ws)


@pytest.fixture
def model_file(tmp_path) -> Path:
    path = tmp_path / "model.txt"
    path.write_text("3\n")
    return path


@pytest.fixture
def model_folder(tmp_path) -> Path:
    folder = tmp_path / "bundle"
    (folder / "sub").mkdir(parents=True)
    (folder / "weights.bin").write_bytes(b"\x00\x01\x02")
    (folder / "sub" / "vocab.txt").write_text("a\nb\n")
    return folder
