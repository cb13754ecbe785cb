"""``aml workspace``: create and inspect a workspace directory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from rich.table import Table

from aml_core.cli._common import State, output_option, pass_state


def _summary(ws) -> dict[str, Any]:
    with ws.reading() as db:
        versions, names = db.execute("SELECT COUNT(*), COUNT(DISTINCT name) FROM models").fetchone()
        services = db.execute("SELECT COUNT(*) FROM services").fetchone()[0]
    return {
        "name": ws.name,
        "root": str(ws.root),
        "backend": ws.backend,
        "models": names,
        "model_versions": versions,
        "services": services,
    }


def _render(state: State, data: dict[str, Any]) -> None:
    def render(console) -> None:
        table = Table(show_header=False, box=None, pad_edge=False)
        table.add_column(style="bold")
        table.add_column()
        for key in ("name", "root", "backend"):
            table.add_row(key, str(data[key]))
        table.add_row("models", f"{data['models']} ({data['model_versions']} versions)")
        table.add_row("services", str(data["services"]))
        console.print(table)

    state.emit(data, render)


@click.group()
def workspace() -> None:
    """Create or show the workspace (models, services and their files live there)."""


@workspace.command("create")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--name", default=None, help="Workspace name (default: the directory's name).")
@click.option("--exist-ok", is_flag=True, help="Open the workspace if DIRECTORY already holds one.")
@output_option
@pass_state
def create(state: State, directory: Path, name: str | None, exist_ok: bool) -> None:
    """Make a new workspace in DIRECTORY (created if missing)."""
    from aml_core.workspace import WORKSPACE_ENV, Workspace

    ws = Workspace.create(directory, name, exist_ok=exist_ok)
    _render(state, _summary(ws))
    if not state.json:
        state.note(f"Use it with: export {WORKSPACE_ENV}={ws.root}  (or aml --workspace {ws.root} ...)", "dim")


@workspace.command("show")
@output_option
@pass_state
def show(state: State) -> None:
    """Show the current workspace (--workspace, else $AML_WORKSPACE, else found from the current directory)."""
    _render(state, _summary(state.workspace))


@workspace.command("check")
@output_option
@pass_state
def check(state: State) -> None:
    """Check the workspace's index and artifacts; exit 6 naming each problem and its fix."""
    from aml_core.errors import WorkspaceDamaged
    from aml_core.workspace import Workspace

    root = Workspace.locate(state.workspace_path)
    problems = Workspace.check(root)
    if problems:
        raise WorkspaceDamaged(f"{len(problems)} problem(s) in the workspace at {root}:\n"
                               + "\n".join(f"- {p}" for p in problems))
    state.emit({"root": str(root), "problems": []},
               lambda console: console.print(f"Workspace {root}: no problems found.", markup=False, soft_wrap=True))


@workspace.command("restore")
@output_option
@pass_state
def restore(state: State) -> None:
    """Put the last backup of the workspace's index (aml.db) in place; the damaged file is kept."""
    from aml_core.workspace import Workspace

    ws = Workspace.restore(Workspace.locate(state.workspace_path))
    _render(state, _summary(ws))
    if not state.json:
        state.note("Restored the index from backups/aml.db; the previous aml.db is kept as aml.db.damaged-*.", "dim")
