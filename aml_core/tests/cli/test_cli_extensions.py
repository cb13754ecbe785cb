"""Subcommands from other distributions, through the ``aml.cli`` entry-point group.

A throw-away distribution (a module plus a ``.dist-info`` with ``entry_points.txt``) is put
on ``PYTHONPATH``, so ``importlib.metadata`` finds it exactly as it finds a pip-installed
one, and the installed ``aml`` script is run against it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from aml_cli_testkit import run_script

MODULE = '''
import click

@click.group()
def hello():
    """Greetings from an extension."""

@hello.command()
@click.option("--name", default="world")
def greet(name):
    click.echo(f"hello {name}")

NOT_A_COMMAND = 42
'''


def make_distribution(root: Path, entry_points: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "aml_cli_fixture_ext.py").write_text(MODULE)
    info = root / "aml_cli_fixture_ext-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: aml-cli-fixture-ext\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(textwrap.dedent(entry_points))
    return root


@pytest.fixture
def good_ext(tmp_path) -> dict[str, str]:
    root = make_distribution(tmp_path / "good", "[aml.cli]\nhello = aml_cli_fixture_ext:hello\n")
    return {"PYTHONPATH": str(root)}


@pytest.fixture
def broken_ext(tmp_path) -> dict[str, str]:
    root = make_distribution(tmp_path / "broken", """\
        [aml.cli]
        hello = aml_cli_fixture_ext:hello
        missing = aml_cli_fixture_no_such_module:cli
        number = aml_cli_fixture_ext:NOT_A_COMMAND
        model = aml_cli_fixture_ext:hello
        """)
    return {"PYTHONPATH": str(root)}


def test_extension_command_runs(good_ext, tmp_path):
    result = run_script("hello", "greet", "--name", "ext", env=good_ext, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "hello ext\n"
    assert result.stderr == ""


def test_extension_is_listed_in_help(good_ext, tmp_path):
    result = run_script("--help", env=good_ext, cwd=tmp_path)
    assert result.returncode == 0
    assert "hello" in result.stdout
    assert "Greetings from an extension." in result.stdout


def test_broken_extensions_warn_and_the_rest_works(broken_ext, tmp_path):
    result = run_script("hello", "greet", env=broken_ext, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "hello world\n"
    assert "could not load the CLI extension 'missing'" in result.stderr
    assert "ModuleNotFoundError" in result.stderr
    assert "'number'" in result.stderr and "not a click command" in result.stderr
    assert "'model'" in result.stderr and "clashes" in result.stderr
    assert "Traceback" not in result.stderr


def test_builtin_commands_do_not_load_extensions(broken_ext, tmp_path):
    result = run_script("-o", "json", "providers", env=broken_ext, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # the broken entries were never imported
    assert any(e["name"] == "local" for e in json.loads(result.stdout))


def test_builtin_name_wins_over_an_extension(broken_ext, tmp_path):
    result = run_script("model", "--help", env=broken_ext, cwd=tmp_path)
    assert result.returncode == 0
    assert "Register and manage model versions" in result.stdout


def test_unknown_command_with_broken_extensions_is_still_a_usage_error(broken_ext, tmp_path):
    result = run_script("nonsense", env=broken_ext, cwd=tmp_path)
    assert result.returncode == 2
    assert "No such command 'nonsense'" in result.stderr
    assert "could not load the CLI extension 'missing'" in result.stderr


def _installed_extensions() -> dict[str, str]:
    from importlib.metadata import entry_points

    return {ep.name: ep.value for ep in entry_points(group="aml.cli")}


@pytest.mark.skipif("emulator" not in _installed_extensions(), reason="aml-emulator is not installed")
def test_the_emulator_distribution_adds_aml_emulator(tmp_path):
    result = run_script("emulator", "--help", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "start" in result.stdout


def test_builtin_commands_never_import_extension_modules(tmp_path, ws):
    code = (
        "import sys\n"
        "from aml_core.cli import main\n"
        "status = main(['--workspace', sys.argv[1], '-o', 'json', 'model', 'list'])\n"
        "leaked = sorted(m for m in sys.modules if m.startswith(('aml_emulator', 'aml_cli_fixture')))\n"
        "print('LEAKED', leaked, status, file=sys.stderr)\n"
    )
    good = make_distribution(tmp_path / "ext", "[aml.cli]\nhello = aml_cli_fixture_ext:hello\n")
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("AML_")}, "PYTHONPATH": str(good)}
    result = subprocess.run([sys.executable, "-c", code, str(ws.root)], capture_output=True, text=True, env=env,
                            cwd=tmp_path, timeout=60)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []
    assert "LEAKED [] 0" in result.stderr
