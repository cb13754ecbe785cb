"""``aml computetarget``: provision, attach, show and release compute targets, in ``az ml
computetarget``'s words (``aml computetarget create aks -n myaks``).

``create KIND`` and ``attach KIND`` exist for every installed target kind that declares a
``compute_class`` (see :class:`aml_core.records.TargetKind`); their options are the
parameters of that class's ``provisioning_configuration`` / ``attach_configuration``, so a
provider's compute gets its commands without the CLI knowing it.
"""

from __future__ import annotations

import inspect
import json
from typing import Any, Callable

import click
from rich.table import Table

from aml_core.cli._common import OUTPUT_FORMATS, State, _set_output, output_option, pass_state

#: az ml's option names where they differ from the configuration parameter's
_ALIASES = {"resource_id": ("--compute-resource-id", "-i"), "agent_count": ("-a",), "vm_size": ("-s",),
            "location": ("-l",)}
#: parameters whose plain option name means something else in az ml (the workspace's group)
_RENAMED = {"resource_group": "--cluster-resource-group"}


def _value(text: str) -> Any:
    """An option's value: JSON when it parses (``3``, ``true``), else the string."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def _compute_data(target: Any) -> dict[str, Any]:
    record = target.record
    return {"name": record.name, "computeType": record.kind, "provisioningState": record.provisioning_state,
            "provisioningErrors": list(record.provisioning_errors),
            "details": {k: v for k, v in record.details.items() if k != "kubeconfig"}}


def _workspace(state: State, workspace_name: str | None, resource_group: str | None):
    """The workspace: ``-w`` (az ml's workspace name, or a directory), else the usual lookup;
    ``-g`` (az ml's workspace resource group) must agree with it."""
    from aml_core.errors import InvalidConfig
    from aml_core.workspace import Workspace

    ws = Workspace.get(workspace_name, resource_group=resource_group) if workspace_name else state.workspace
    if resource_group and ws.resource_group and ws.resource_group.lower() != resource_group.lower():
        raise InvalidConfig(f"Workspace {ws.name!r} is in resource group {ws.resource_group!r}, not "
                            f"{resource_group!r} (-g names the workspace's resource group).")
    return ws


class _KindCommands(click.Group):
    """``create``/``attach``: one subcommand per target kind with a compute class."""

    def __init__(self, *args: Any, factory: str, attach: bool, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.factory = factory
        self.attach = attach

    def _kinds(self) -> dict[str, Any]:
        from aml_core.plugins import default_hooks

        return {name: kind for name, kind in default_hooks().kinds.items()
                if kind.compute_class is not None and hasattr(kind.compute_class, self.factory)}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(self._kinds())

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        kind = self._kinds().get(name) or self._kinds().get(name.lower())
        return None if kind is None else self._command(kind)

    def _command(self, kind: Any) -> click.Command:
        factory = getattr(kind.compute_class, self.factory)
        params = [p for p in inspect.signature(factory).parameters.values()
                  if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
        verb = "Attach" if self.attach else "Provision"

        def run(state: State, name: str, workspace_name: str | None, resource_group: str | None,
                no_wait: bool, **settings: Any) -> None:
            from aml_core.compute import ComputeTarget

            ws = _workspace(state, workspace_name, resource_group)
            config = factory(**{k: _value(v) for k, v in settings.items() if v is not None})
            start = ComputeTarget.attach if self.attach else ComputeTarget.create
            target = start(ws, name, config)
            if not no_wait:
                state.note(f"{verb}ing {kind.name} compute {name!r} ...")
                target.wait_for_completion()
                if not state.json:
                    state.note(f"Compute {name!r} is {target.provisioning_state}", "green")
            state.emit(_compute_data(target), lambda console: console.print(_detail(target)))

        command = click.Command(kind.name, callback=click.pass_obj(run),
                                help=f"{verb} {kind.name} compute ({kind.description or kind.provider}).")
        command.params.append(click.Option(["--name", "-n"], required=True, help="The compute target's name."))
        command.params.append(click.Option(["--workspace-name", "-w", "workspace_name"], default=None,
                                           help="The workspace (az ml's name, or its directory)."))
        command.params.append(click.Option(["--resource-group", "-g", "resource_group"], default=None,
                                           help="The workspace's resource group (checked against it)."))
        command.params.append(click.Option(["--no-wait", "no_wait"], is_flag=True,
                                           help="Return at once instead of waiting for it to finish."))
        for param in params:
            long = _RENAMED.get(param.name, "--" + param.name.replace("_", "-"))
            command.params.append(click.Option([long, *_ALIASES.get(param.name, ()), param.name], default=None,
                                               help=f"{param.name} of {kind.compute_class.__name__}.{self.factory}()"))
        command.params.append(click.Option(["-o", "--output"], type=click.Choice(OUTPUT_FORMATS), default=None,
                                           expose_value=False, callback=_set_output,
                                           help="Output format: table (default) or json."))
        return command


def _detail(target: Any) -> Table:
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    for key, value in _compute_data(target).items():
        table.add_row(key, str(value))
    return table


@click.group()
def computetarget() -> None:
    """Provision, attach and release compute targets (az ml computetarget)."""


computetarget.add_command(_KindCommands("create", factory="provisioning_configuration", attach=False,
                                        help="Provision new compute of a target kind (aml computetarget create aks -n NAME)."))
computetarget.add_command(_KindCommands("attach", factory="attach_configuration", attach=True,
                                        help="Attach existing compute (aml computetarget attach aks -n NAME -i RESOURCE_ID)."))


def _named(func: Callable) -> Callable:
    return click.option("--name", "-n", required=True, help="The compute target's name.")(func)


@computetarget.command("list")
@output_option
@pass_state
def list_(state: State) -> None:
    """The workspace's compute targets."""
    from aml_core.compute import ComputeTarget

    targets = ComputeTarget.list(state.workspace)

    def render(console) -> None:
        table = Table()
        for column in ("Name", "Compute type", "State"):
            table.add_column(column)
        for target in targets:
            table.add_row(target.name, target.type, target.provisioning_state)
        console.print(table)

    state.emit([_compute_data(t) for t in targets], render)


@computetarget.command("show")
@_named
@output_option
@pass_state
def show(state: State, name: str) -> None:
    """One compute target."""
    from aml_core.compute import ComputeTarget

    target = ComputeTarget(state.workspace, name)
    state.emit(_compute_data(target), lambda console: console.print(_detail(target)))


@computetarget.command("detach")
@_named
@output_option
@pass_state
def detach(state: State, name: str) -> None:
    """Forget a compute target; the cluster keeps running."""
    from aml_core.compute import ComputeTarget

    ComputeTarget(state.workspace, name).detach()
    state.emit({"name": name, "detached": True}, lambda console: console.print(f"Detached {name}", markup=False))


@computetarget.command("delete")
@_named
@output_option
@pass_state
def delete(state: State, name: str) -> None:
    """Delete a provisioned compute target (the cluster too) and forget it."""
    from aml_core.compute import ComputeTarget

    ComputeTarget(state.workspace, name).delete()
    state.emit({"name": name, "deleted": True}, lambda console: console.print(f"Deleted {name}", markup=False))
