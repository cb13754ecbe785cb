"""``aml environment``: the workspace's environment registry, in ``az ml environment``'s words.

An environment on disk is a folder holding ``azureml_environment.json`` and
``conda_dependencies.yml`` (what ``Environment.save_to_directory`` writes and ``scaffold``
starts): ``register -d DIR`` stores it as the name's next version, ``download`` writes one
back out.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from rich.table import Table

from aml_core.cli._common import State, output_option, pass_state


def _data(env: Any) -> dict[str, Any]:
    return env.to_dict()


def _detail(env: Any) -> Table:
    conda = env.python.conda_dependencies
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    for key, value in (("name", env.name), ("version", env.version or "-"),
                       ("pip packages", ", ".join(conda.pip_packages) or "-"),
                       ("conda packages", ", ".join(conda.conda_packages) or "-"),
                       ("python", conda.python_version or "-"),
                       ("user managed", str(env.python.user_managed_dependencies)),
                       ("docker enabled", str(env.docker.enabled)),
                       ("base image", env.docker.base_image or "-")):
        table.add_row(key, value)
    return table


@click.group()
def environment() -> None:
    """Register and find environments (az ml environment)."""


@environment.command("list")
@output_option
@pass_state
def list_(state: State) -> None:
    """The latest version of every environment, curated ones included."""
    from aml_core.environment import Environment

    found = Environment.list(state.workspace)

    def render(console) -> None:
        table = Table()
        for column in ("Name", "Version", "Pip packages"):
            table.add_column(column, overflow="fold")
        for env in found.values():
            table.add_row(env.name, env.version or "-", ", ".join(env.python.conda_dependencies.pip_packages))
        console.print(table)

    state.emit([_data(env) for env in found.values()], render)


@environment.command("show")
@click.option("--name", "-n", required=True, help="The environment's name.")
@click.option("--version", "-v", default=None, help="Its version (default: the latest).")
@output_option
@pass_state
def show(state: State, name: str, version: str | None) -> None:
    """One environment version."""
    from aml_core.environment import Environment

    env = Environment.get(state.workspace, name, version)
    state.emit(_data(env), lambda console: console.print(_detail(env)))


@environment.command("register")
@click.option("--directory", "-d", required=True, type=click.Path(file_okay=False, exists=True, path_type=Path),
              help="A folder with azureml_environment.json (and the conda file it names).")
@output_option
@pass_state
def register(state: State, directory: Path) -> None:
    """Register the environment a folder describes (an unchanged definition keeps its version)."""
    from aml_core.environment import Environment

    env = Environment.load_from_directory(directory).register(state.workspace)
    if not state.json:
        state.note(f"Registered environment {env.name} version {env.version}", "green")
    state.emit(_data(env), lambda console: console.print(_detail(env)))


@environment.command("download")
@click.option("--name", "-n", required=True, help="The environment's name.")
@click.option("--version", "-v", default=None, help="Its version (default: the latest).")
@click.option("--directory", "-d", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Where to write azureml_environment.json and conda_dependencies.yml.")
@click.option("--overwrite", is_flag=True, help="Replace those files if they are there.")
@output_option
@pass_state
def download(state: State, name: str, version: str | None, directory: Path, overwrite: bool) -> None:
    """Write a registered (or curated) environment's definition files."""
    from aml_core.environment import Environment

    env = Environment.get(state.workspace, name, version)
    env.save_to_directory(directory, overwrite=overwrite)
    state.emit({"name": env.name, "version": env.version, "directory": str(directory)},
               lambda console: console.print(str(directory), markup=False))


@environment.command("scaffold")
@click.option("--name", "-n", required=True, help="The new environment's name.")
@click.option("--directory", "-d", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Where to write its definition files to edit.")
@output_option
@pass_state
def scaffold(state: State, name: str, directory: Path) -> None:
    """Start a new environment's definition files (then edit them and `register -d`)."""
    from aml_core.environment import CondaDependencies, Environment

    env = Environment(name)
    env.python.conda_dependencies = CondaDependencies.create(pip_packages=["azureml-defaults"])
    env.save_to_directory(directory)
    state.emit({"name": name, "directory": str(directory)}, lambda console: console.print(str(directory), markup=False))
