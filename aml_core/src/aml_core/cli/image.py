"""``aml image``: package registered models as OCI images, list, show and delete them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from rich.table import Table

from aml_core.cli._common import State, output_option, pass_state


def image_data(image) -> dict[str, Any]:
    return {"id": image.id, **image.serialize()}


def _parse_ref(ref: str) -> tuple[str, int | None]:
    name, _, version = ref.partition(":")
    if version and not version.isdigit():
        raise click.BadParameter(f"{ref!r} is not NAME[:VERSION] with a whole-number version.", param_hint="NAME[:VERSION]")
    return name, int(version) if version else None


def _detail(image) -> Table:
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    details = image.record.details
    for key, value in (
        ("id", image.id), ("state", image.creation_state), ("location", image.image_location or "-"),
        ("digest", image.digest or "-"), ("kind", details.get("kind", "-")),
        ("models", ", ".join(details.get("models") or []) or "-"), ("entry script", details.get("entry_script", "-")),
        ("environment", f"{details.get('environment', '-')} ({(details.get('environment_hash') or '')[:12]})"),
        ("created", details.get("created", "-")),
    ):
        table.add_row(key, str(value))
    if image.record.context_dir:
        table.add_row("build context", image.record.context_dir)
    if details.get("error"):
        table.add_row("error", details["error"])
    return table


@click.group()
def image() -> None:
    """Package models as OCI images (NAME:VERSION, versions count from 1)."""


@image.command("create")
@click.argument("name")
@click.option("--model", "-m", "models", multiple=True, required=True, metavar="NAME[:VERSION]",
              help="A registered model to package (repeatable; latest version when VERSION is left out).")
@click.option("--entry-script", "-e", required=True, help="The scoring script with init() and run(raw_data).")
@click.option("--source-dir", "-s", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder copied into the image; --entry-script is relative to it.")
@click.option("--environment", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="requirements.txt (pip) or conda .yml with what the script needs.")
@click.option("--label", default=None, help="A free-text label stored with the image.")
@click.option("--dockerfile", is_flag=True, help="Write a Dockerfile build context instead of building the image.")
@output_option
@pass_state
def create(state: State, name: str, models: tuple[str, ...], entry_script: str, source_dir: Path | None,
           environment: Path | None, label: str | None, dockerfile: bool) -> None:
    """Build image NAME's next version from models, an entry script and an environment."""
    from aml_core.cli.service import _inference_config, _models
    from aml_core.model import Model

    inference = _inference_config(name, entry_script, source_dir, environment)
    built = Model.package(state.workspace, _models(state, models), inference, generate_dockerfile=dockerfile,
                          image_name=name, image_label=label)
    if not state.json:
        where = built.record.context_dir if dockerfile else built.image_location
        state.note(f"Image {built.id} is ready: {where}", "green")
    state.emit(image_data(built), lambda console: console.print(_detail(built)))


@image.command("list")
@click.option("--name", "-n", default=None, help="Only versions of this image.")
@output_option
@pass_state
def list_(state: State, name: str | None) -> None:
    """List images, newest version first."""
    from aml_core.images import Image

    images = Image.list(state.workspace, image_name=name)

    def render(console) -> None:
        if not images:
            state.note("No images yet. Build one with `aml image create NAME --model M --entry-script score.py`.")
            return
        table = Table()
        for column in ("Name", "Version", "State", "Digest", "Location"):
            table.add_column(column, overflow="fold")
        for i in images:
            table.add_row(i.name, str(i.version), i.creation_state or "-", (i.digest or "-")[:19],
                          i.image_location or i.record.context_dir or "-")
        console.print(table)

    state.emit([image_data(i) for i in images], render)


@image.command("show")
@click.argument("ref", metavar="NAME[:VERSION]")
@output_option
@pass_state
def show(state: State, ref: str) -> None:
    """Show one image version (the latest when VERSION is left out)."""
    from aml_core.images import Image

    name, version = _parse_ref(ref)
    found = Image(state.workspace, name, version=version)
    state.emit(image_data(found), lambda console: console.print(_detail(found)))


@image.command("delete")
@click.argument("ref", metavar="NAME:VERSION")
@output_option
@pass_state
def delete(state: State, ref: str) -> None:
    """Delete one image version from the workspace and its registry."""
    from aml_core.images import Image

    name, version = _parse_ref(ref)
    if version is None:
        raise click.BadParameter("name the version to delete: NAME:VERSION", param_hint="NAME:VERSION")
    found = Image(state.workspace, name, version=version)
    found.delete()
    state.emit({"id": found.id, "deleted": True},
               lambda console: console.print(f"Deleted image {found.id}", markup=False, soft_wrap=True))
