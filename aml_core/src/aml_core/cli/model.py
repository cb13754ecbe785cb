"""``aml model``: register, list, show, download and delete model versions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from rich.table import Table

from aml_core.cli._common import (
    State,
    format_mapping,
    human_size,
    output_option,
    parse_model_ref,
    parse_pairs,
    pass_state,
)

#: files listed by ``aml model show`` in table form (JSON lists them all)
MAX_FILES_SHOWN = 20


def model_data(model) -> dict[str, Any]:
    """The JSON form of a model version: its record plus its id."""
    return {"id": model.id, **model.serialize()}


def _model_table(models: list) -> Table:
    table = Table()
    table.add_column("Name", overflow="fold")
    table.add_column("Version", justify="right")
    table.add_column("Tags", overflow="fold")
    table.add_column("Properties", overflow="fold")
    table.add_column("Size", justify="right")
    table.add_column("Created")
    table.add_column("Description", overflow="fold")
    for model in models:
        size = sum(f.size for f in model.record.files)
        table.add_row(
            model.name, str(model.version), format_mapping(model.tags), format_mapping(model.properties),
            human_size(size), model.created_time, model.description or "",
        )
    return table


def _model_detail(model) -> Table:
    record = model.record
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    table.add_row("id", model.id)
    table.add_row("name", model.name)
    table.add_row("version", str(model.version))
    table.add_row("description", model.description or "-")
    table.add_row("framework", model.model_framework or "-")
    table.add_row("created", model.created_time)
    table.add_row("tags", format_mapping(model.tags))
    table.add_row("properties", format_mapping(model.properties))
    kind = "folder" if record.is_folder else "file"
    total = sum(f.size for f in record.files)
    table.add_row("content", f"{kind} {record.root!r}: {len(record.files)} file(s), {human_size(total)}")
    for entry in record.files[:MAX_FILES_SHOWN]:
        table.add_row("", f"{entry.path}  {human_size(entry.size)}  {entry.digest[:19]}…")
    if len(record.files) > MAX_FILES_SHOWN:
        table.add_row("", f"… and {len(record.files) - MAX_FILES_SHOWN} more (all of them with -o json)")
    return table


def _get(state: State, ref: str, *, require_version: bool = False):
    from aml_core.model import Model

    name, version = parse_model_ref(ref, require_version=require_version)
    return Model(state.workspace, name, version=version)


@click.group()
def model() -> None:
    """Register and manage model versions (NAME:VERSION, versions count from 1)."""


@model.command("register")
@click.option("--name", "-n", required=True, help="Model name; registering it again makes the next version.")
@click.option("--path", "-p", "path", required=True, type=click.Path(path_type=Path),
              help="The model file or folder to register.")
@click.option("--tag", "tags", multiple=True, metavar="KEY=VALUE", help="A tag (repeatable; tags can change later).")
@click.option("--property", "properties", multiple=True, metavar="KEY=VALUE",
              help="A property (repeatable; properties never change once set).")
@click.option("--description", "-d", default=None, help="Free text shown in listings.")
@click.option("--framework", default=None, help="The model framework (e.g. ScikitLearn, Onnx), for information.")
@output_option
@pass_state
def register(state: State, name: str, path: Path, tags: tuple[str, ...], properties: tuple[str, ...],
             description: str | None, framework: str | None) -> None:
    """Register a model file or folder as NAME's next version."""
    from aml_core.model import Model

    tag_map = dict(parse_pairs(tags, "--tag"))
    property_map = dict(parse_pairs(properties, "--property"))
    registered = Model.register(state.workspace, model_path=path, model_name=name, tags=tag_map,
                                properties=property_map, description=description, model_framework=framework)
    if not state.json:
        state.note(f"Registered model {registered.id}", "green")
    state.emit(model_data(registered), lambda console: console.print(_model_detail(registered)))


@model.command("list")
@click.option("--name", "-n", default=None, help="Only versions of this model.")
@click.option("--tag", "tags", multiple=True, metavar="KEY[=VALUE]",
              help="Only models with this tag (and value, if given). Repeatable: all must match.")
@click.option("--property", "properties", multiple=True, metavar="KEY[=VALUE]",
              help="Only models with this property (and value, if given). Repeatable.")
@click.option("--latest", is_flag=True, help="Only the newest version of each model.")
@output_option
@pass_state
def list_(state: State, name: str | None, tags: tuple[str, ...], properties: tuple[str, ...], latest: bool) -> None:
    """List registered model versions, newest first within each name."""
    from aml_core.model import Model

    tag_filter = [list(p) if isinstance(p, tuple) else p for p in parse_pairs(tags, "--tag", require_value=False)]
    prop_filter = [
        list(p) if isinstance(p, tuple) else p for p in parse_pairs(properties, "--property", require_value=False)
    ]
    models = Model.list(state.workspace, name=name, tags=tag_filter or None, properties=prop_filter or None,
                        latest=latest)

    def render(console) -> None:
        if not models:
            state.note("No models match." if (name or tags or properties) else
                       "No models registered yet. Register one with `aml model register --name NAME --path FILE`.")
            return
        console.print(_model_table(models))

    state.emit([model_data(m) for m in models], render)



@model.command("show")
@click.argument("ref", metavar="NAME[:VERSION]")
@output_option
@pass_state
def show(state: State, ref: str) -> None:
    """Show one model version (the latest when VERSION is left out)."""
    found = _get(state, ref)
    state.emit(model_data(found), lambda console: console.print(_model_detail(found)))


@model.command("download")
@click.argument("ref", metavar="NAME[:VERSION]", required=False)
@click.option("--model-id", "-i", "model_id", default=None, metavar="NAME:VERSION",
              help="The model to download (az ml's form of REF).")
@click.option("--target-dir", "-t", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder to copy the model's file or folder into (created if missing).")
@click.option("--exist-ok", "--overwrite", "exist_ok", is_flag=True,
              help="Replace the file or folder if it is already there.")
@output_option
@pass_state
def download(state: State, ref: str | None, model_id: str | None, target_dir: Path, exist_ok: bool) -> None:
    """Copy a model version's files out of the workspace (``az ml model download -i ID -t DIR``)."""
    if (ref is None) == (model_id is None):
        raise click.UsageError("Name the model once: as REF or with --model-id/-i NAME:VERSION.")
    found = _get(state, ref or model_id)
    path = found.download(target_dir=target_dir, exist_ok=exist_ok)
    state.emit({"id": found.id, "path": path}, lambda console: console.print(path, markup=False, soft_wrap=True))
    if not state.json:
        state.note(f"Downloaded model {found.id}", "green")


@model.command("delete")
@click.argument("ref", metavar="NAME:VERSION")
@output_option
@pass_state
def delete(state: State, ref: str) -> None:
    """Delete one model version (refused while a service uses it)."""
    found = _get(state, ref, require_version=True)
    found.delete()
    state.emit({"id": found.id, "deleted": True},
               lambda console: console.print(f"Deleted model {found.id}", markup=False, soft_wrap=True))


@model.command("deploy")
@click.option("--name", "-n", required=True, help="The service's name.")
@click.option("--model", "-m", "models", multiple=True, required=True, metavar="NAME[:VERSION]",
              help="A registered model to serve (repeatable; the latest version when VERSION is left out).")
@click.option("--inference-config-file", "--ic", "-ic", "inference_config_file", default=None,
              type=click.Path(dir_okay=False, path_type=Path),
              help="inferenceconfig.json: entryScript, sourceDirectory, environment ...")
@click.option("--entry-script", "--es", "-es", "entry_script", default=None,
              help="Instead of --ic: the scoring script (with --source-directory and --environment-name).")
@click.option("--source-directory", "--sd", "-sd", "source_directory", default=None,
              help="With --entry-script: the folder copied into the service.")
@click.option("--environment-name", "-e", "environment_name", default=None,
              help="With --entry-script: a registered or curated environment.")
@click.option("--environment-version", "--ev", "-ev", "environment_version", default=None,
              help="With --environment-name: its version (default: the latest).")
@click.option("--deploy-config-file", "--dc", "-dc", "deploy_config_file", default=None,
              type=click.Path(dir_okay=False, path_type=Path),
              help="deploymentconfig.json: computeType and that target's settings.")
@click.option("--compute-target", "--ct", "-ct", "compute_target", default=None,
              help="The compute target to deploy to (an attached or provisioned cluster ...).")
@click.option("--overwrite", is_flag=True, help="Replace a service of the same name.")
@click.option("--no-wait", "no_wait", is_flag=True, help="Print the service as soon as the deployment has started, without "
                   "following its progress (the process still ends only when the provider's step is done, so the "
                   "workspace records it).")
@output_option
@pass_state
def deploy(state: State, name: str, models: tuple[str, ...], inference_config_file: Path | None,
           entry_script: str | None, source_directory: str | None, environment_name: str | None,
           environment_version: str | None, deploy_config_file: Path | None, compute_target: str | None,
           overwrite: bool, no_wait: bool) -> None:
    """Deploy models as a service from az ml's configuration files.

    \b
    aml model deploy -n myservice -m mymodel:1 --ic inferenceconfig.json --dc deploymentconfig.json --ct myaks
    """
    from aml_core.configfiles import read_deployment_config
    from aml_core.errors import InvalidConfig
    from aml_core.model import Model
    from aml_core.webservice import validate_service_name

    from aml_core.cli.service import _detail, follow

    validate_service_name(name)
    compute_kind = None
    if compute_target is not None:
        from aml_core.compute import ComputeTarget

        compute_kind = ComputeTarget(state.workspace, compute_target).type
    if deploy_config_file is None:
        if compute_kind is None:
            raise InvalidConfig("Give --deploy-config-file/--dc (deploymentconfig.json), or --compute-target/--ct "
                                "to deploy there with that target's defaults.")
        from aml_core.plugins import default_hooks

        config = default_hooks().target(compute_kind).deployment_config_class()
    else:
        config = read_deployment_config(deploy_config_file, compute_type=compute_kind)
    inference = _deploy_inference_config(state, inference_config_file, entry_script, source_directory,
                                         environment_name, environment_version)
    found = []
    for ref in models:
        model_name, version = parse_model_ref(ref, param_hint="--model")
        found.append(Model(state.workspace, model_name, version=version))
    handle = Model.deploy(state.workspace, name, found, inference, config, deployment_target=compute_target,
                          overwrite=overwrite)
    if not no_wait:
        follow(state, handle, f"Deploying {name}")
        if not state.json:
            state.note(f"Service {name} is {handle.state} at {handle.scoring_uri}", "green")
    state.emit(handle.serialize(), lambda console: console.print(_detail(handle)))


def _deploy_inference_config(state: State, inference_config_file: Path | None, entry_script: str | None,
                             source_directory: str | None, environment_name: str | None,
                             environment_version: str | None):
    """From inferenceconfig.json, or from az ml's --entry-script/--source-directory/--environment-name."""
    from aml_core.configfiles import read_inference_config
    from aml_core.environment import Environment
    from aml_core.inference import InferenceConfig

    inline = {"--entry-script": entry_script, "--source-directory": source_directory,
              "--environment-name": environment_name, "--environment-version": environment_version}
    given = [option for option, value in inline.items() if value is not None]
    if inference_config_file is not None:
        if given:
            raise click.UsageError(f"{', '.join(given)} describe the inference configuration that "
                                   f"--inference-config-file gives; use one or the other.")
        return read_inference_config(inference_config_file, workspace=state.workspace)
    if entry_script is None:
        raise click.UsageError("Give --inference-config-file/--ic inferenceconfig.json, or --entry-script/--es "
                               "(with --environment-name/-e).")
    if environment_version is not None and environment_name is None:
        raise click.UsageError("--environment-version needs --environment-name.")
    environment = (Environment.get(state.workspace, environment_name, environment_version)
                   if environment_name else None)
    return InferenceConfig(entry_script=entry_script, source_directory=source_directory, environment=environment)
