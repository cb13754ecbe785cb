"""``aml service``: deploy models as scoring services, call them, read logs, update, delete."""

from __future__ import annotations

import contextlib
import inspect
import json
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import click
from rich.table import Table
from rich.text import Text

from aml_core.cli._common import State, cli_terms, output_option, parse_model_ref, parse_setting, pass_state


# -- building the API objects from options --------------------------------------------------


def _models(state: State, refs: tuple[str, ...]) -> list:
    from aml_core.model import Model

    models = []
    for ref in refs:
        name, version = parse_model_ref(ref, param_hint="--model")
        models.append(Model(state.workspace, name, version=version))
    return models


def _environment(service_name: str, path: Path | None):
    """An Environment from a pip requirements file or a conda YAML (by extension)."""
    from aml_core.environment import Environment

    if path is None:
        return None
    env_name = f"{service_name}-env"
    if path.suffix.lower() in (".yml", ".yaml"):
        return Environment.from_conda_specification(env_name, path)
    return Environment.from_pip_requirements(env_name, path)


def _inference_config(service_name: str, entry_script: str, source_dir: Path | None, environment: Path | None):
    from aml_core.inference import InferenceConfig

    return InferenceConfig(
        entry_script=entry_script,
        source_directory=str(source_dir) if source_dir else None,
        environment=_environment(service_name, environment),
    )


def _settings(port: int | None, workers: int | None, engine: str | None, options: tuple[str, ...]) -> dict[str, Any]:
    settings: dict[str, Any] = dict(parse_setting(raw, "--option") for raw in options)
    for key, value in (("port", port), ("workers", workers), ("engine", engine)):
        if value is not None:
            settings[key] = value
    return settings


def _accepted(cls: type) -> list[str]:
    params = inspect.signature(cls).parameters.values()
    return [p.name for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]


def deployment_config(kind: str, settings: dict[str, Any]) -> Any:
    """The target's deployment configuration, built from the settings its class accepts."""
    from aml_core.errors import InvalidConfig, NotSupported
    from aml_core.plugins import default_hooks

    target = default_hooks().target(kind)
    config_cls = target.deployment_config_class
    if config_cls is None:
        raise NotSupported(kind, "deployment from the CLI", f"(provider {target.provider} declares no deployment configuration class)")
    accepted = _accepted(config_cls)
    unknown = sorted(set(settings) - set(accepted))
    if unknown:
        raise InvalidConfig(
            f"The {kind!r} target does not accept {', '.join(unknown)}. Its deployment settings are: "
            f"{', '.join(accepted) or 'none'} (pass others with --option KEY=VALUE)."
        )
    return config_cls(**settings)


# -- progress -------------------------------------------------------------------------------


INTERRUPT_NOTE = (
    "Ctrl-C: finishing the operation in progress first, so the workspace records what the provider did; "
    "the command then exits with status 130 ..."
)


@contextlib.contextmanager
def _deferred_interrupt() -> Iterator[list[float]]:
    """Turn Ctrl-C into a flag while an operation runs, instead of a KeyboardInterrupt.

    The provider works in a (non-daemon) thread that must finish its step for the
    workspace to stay consistent. Letting KeyboardInterrupt land in ``Thread.join``
    is worse than useless on CPython 3.11: the interrupted join marks the still-running
    thread as stopped, so the interpreter exits under it and a half-started service is
    never recorded.
    """
    pressed: list[float] = []
    if threading.current_thread() is not threading.main_thread():
        yield pressed
        return

    def handler(signum: int, frame: Any) -> None:
        pressed.append(time.time())

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield pressed
    finally:
        signal.signal(signal.SIGINT, previous)


def follow(state: State, service: Any, label: str) -> None:
    """Show an operation's progress on stderr until it ends; re-raise its error.

    On an interactive terminal: a spinner with the latest step, each step also printed
    above it. Otherwise (a pipe, a file, ``TERM=dumb``, ``TTY_INTERACTIVE=0``): one
    timestamped line per step and no cursor movement, so CI logs stay readable.
    Ctrl-C is noted and honoured once the operation has ended (exit status 130).
    """
    operation = getattr(service, "_operation", None)
    if operation is None:
        service.wait_for_deployment()
        return
    err = state.err
    status = err.status(label, spinner="dots") if err.is_interactive else contextlib.nullcontext()

    def show(stamp: float, text: str) -> None:
        err.print(Text.assemble((time.strftime("%H:%M:%S ", time.localtime(stamp)), "dim"), text), soft_wrap=True)
        if status is not None and hasattr(status, "update"):
            status.update(f"{label}: {text}")

    def drain() -> None:
        for stamp, text in operation.drain():
            show(stamp, text)

    noted = 0
    with _deferred_interrupt() as pressed, status:
        while True:
            done = operation.join(0.1)
            drain()
            if len(pressed) > noted:
                noted = len(pressed)
                err.print(Text(INTERRUPT_NOTE, style="yellow"), soft_wrap=True)
            if done:
                break
    service.wait_for_deployment()  # the operation's error, if any, wins over the interrupt
    if pressed:
        raise KeyboardInterrupt


# -- rendering ------------------------------------------------------------------------------


def _detail(service: Any) -> Table:
    record = service.record
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    rows = [
        ("name", record.name),
        ("compute type", record.kind),
        ("state", record.state),
        ("scoring uri", record.scoring_uri or "-"),
        ("swagger uri", record.swagger_uri or "-"),
        ("models", ", ".join(record.models) or "-"),
        ("auth", record.auth_mode),
        ("created", record.created_time),
        ("updated", record.updated_time),
    ]
    if record.error:
        rows.append(("error", cli_terms(record.error, record.name)))
    for key, value in rows:
        table.add_row(key, Text(str(value)))
    return table


def _refresh(service: Any) -> None:
    """Ask the provider for the live state; keep the stored one if it cannot answer."""
    from aml_core.errors import AmlError

    with contextlib.suppress(AmlError):
        service.update_deployment_state()


def _get(state: State, name: str):
    from aml_core.webservice import Webservice

    state.subject = name
    return Webservice(state.workspace, name)


# -- commands -------------------------------------------------------------------------------


@click.group()
def service() -> None:
    """Deploy and manage scoring services."""


def _settings_options(func: Callable) -> Callable:
    func = click.option("--option", "options", multiple=True, metavar="KEY=VALUE",
                        help="Any other deployment setting the target accepts (value read as JSON if it parses). "
                             "Repeatable.")(func)
    func = click.option("--engine", default=None, help="How the target runs it (local: process).")(func)
    func = click.option("--workers", type=click.IntRange(min=1), default=None,
                        help="Scoring worker processes.")(func)
    func = click.option("--port", type=click.IntRange(1, 65535), default=None,
                        help="Port on 127.0.0.1 (local target; default: a free one).")(func)
    return func


@service.command("deploy")
@click.argument("name")
@click.option("--model", "-m", "models", multiple=True, required=True, metavar="NAME[:VERSION]",
              help="A registered model to serve (repeatable; latest version when VERSION is left out).")
@click.option("--entry-script", "-e", required=True, help="The scoring script with init() and run(raw_data).")
@click.option("--source-dir", "-s", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder copied into the service; --entry-script is relative to it.")
@click.option("--environment", "environment", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="requirements.txt (pip) or conda .yml with what the script needs.")
@click.option("--target", "-t", default="local", show_default=True, metavar="KIND",
              help="Target kind (see `aml providers`).")
@click.option("--compute-target", default=None, help="Name of provisioned compute, for targets that need one.")
@_settings_options
@click.option("--overwrite", is_flag=True, help="Replace a service of the same name.")
@output_option
@pass_state
def deploy(state: State, name: str, models: tuple[str, ...], entry_script: str, source_dir: Path | None,
           environment: Path | None, target: str, compute_target: str | None, port: int | None,
           workers: int | None, engine: str | None, options: tuple[str, ...], overwrite: bool) -> None:
    """Deploy registered models as the service NAME, with an entry script and environment."""
    from aml_core.model import Model
    from aml_core.webservice import validate_service_name

    validate_service_name(name)
    state.subject = name
    config = deployment_config(target, _settings(port, workers, engine, options))
    inference = _inference_config(name, entry_script, source_dir, environment)
    found = _models(state, models)
    handle = Model.deploy(state.workspace, name, found, inference, config, deployment_target=compute_target,
                          overwrite=overwrite)
    follow(state, handle, f"Deploying {name}")
    if not state.json:
        state.note(f"Service {name} is {handle.state} at {handle.scoring_uri}", "green")
    state.emit(handle.serialize(), lambda console: console.print(_detail(handle)))


@service.command("list")
@click.option("--compute-type", "-c", default=None, help="Only services of this target kind (e.g. local).")
@click.option("--model", "model_name", default=None, help="Only services that serve this model name.")
@output_option
@pass_state
def list_(state: State, compute_type: str | None, model_name: str | None) -> None:
    """List the workspace's services with their live state."""
    from aml_core.webservice import Webservice

    services = Webservice.list(state.workspace, compute_type=compute_type, model_name=model_name)
    for svc in services:
        _refresh(svc)

    def render(console) -> None:
        if not services:
            state.note("No services." if (compute_type or model_name) else
                       "No services yet. Deploy one with `aml service deploy NAME --model M --entry-script score.py`.")
            return
        table = Table()
        for column in ("Name", "Compute type", "State", "Scoring URI", "Models", "Updated"):
            table.add_column(column, overflow="fold")
        for svc in services:
            record = svc.record
            table.add_row(record.name, record.kind, record.state, record.scoring_uri or "-",
                          ", ".join(record.models) or "-", record.updated_time)
        console.print(table)

    state.emit([svc.serialize() for svc in services], render)


@service.command("show")
@click.argument("name")
@output_option
@pass_state
def show(state: State, name: str) -> None:
    """Show one service, with its live state."""
    svc = _get(state, name)
    _refresh(svc)
    state.emit(svc.serialize(), lambda console: console.print(_detail(svc)))


@service.command("logs")
@click.argument("name")
@click.option("--num-lines", "-n", type=click.IntRange(min=1), default=5000, show_default=True,
              help="How many of the last lines to show.")
@click.option("--init", "init", is_flag=True, help="The init container's logs, on targets that have one.")
@output_option
@pass_state
def logs(state: State, name: str, num_lines: int, init: bool) -> None:
    """Print the last lines of a service's log."""
    svc = _get(state, name)
    text = svc.get_logs(num_lines=num_lines, init=init)
    state.emit({"name": name, "logs": text}, lambda console: click.echo(text, nl=not text.endswith("\n")))


@service.command("run")
@click.argument("name")
@click.option("--data", "-d", default=None, metavar="JSON", help="The request body (usually JSON).")
@click.option("--file", "-f", "file", type=click.File("rb"), default=None,
              help="Read the request body from a file ('-' for stdin).")
@output_option
@pass_state
def run(state: State, name: str, data: str | None, file) -> None:
    """Score one request with the service and print its JSON response."""
    if (data is None) == (file is None):
        raise click.UsageError("Give the request body with exactly one of --data JSON or --file FILE.")
    if data is not None:
        _check_json(data)
    body: str | bytes = data if data is not None else file.read()
    svc = _get(state, name)
    result = svc.run(body)
    if state.json or not isinstance(result, str):
        click.echo(json.dumps(result, indent=2, default=str))
    else:
        click.echo(result)


def _check_json(data: str) -> None:
    """Refuse a malformed --data before it reaches the user's run() as a 500."""
    try:
        json.loads(data)
    except ValueError as exc:
        raise click.BadParameter(
            f"{data!r} is not valid JSON ({exc}). Quote it for the shell and use double quotes inside, "
            f"e.g. --data '{{\"data\": [[1, 2, 3]]}}'; to send a body that is not JSON, use --file.",
            param_hint="--data",
        ) from None


@service.command("update")
@click.argument("name")
@click.option("--model", "-m", "models", multiple=True, metavar="NAME[:VERSION]",
              help="Serve these models instead (repeatable; replaces the whole list).")
@click.option("--entry-script", "-e", default=None, help="A new scoring script.")
@click.option("--source-dir", "-s", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder copied into the service (with --entry-script).")
@click.option("--environment", "environment", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="requirements.txt or conda .yml (with --entry-script).")
@_settings_options
@output_option
@pass_state
def update(state: State, name: str, models: tuple[str, ...], entry_script: str | None, source_dir: Path | None,
           environment: Path | None, port: int | None, workers: int | None, engine: str | None,
           options: tuple[str, ...]) -> None:
    """Change a running service's models, code or settings in place."""
    if entry_script is None and (source_dir is not None or environment is not None):
        raise click.UsageError("--source-dir and --environment describe a new entry script: give --entry-script too.")
    svc = _get(state, name)
    inference = _inference_config(name, entry_script, source_dir, environment) if entry_script else None
    svc.update(models=_models(state, models) if models else None, inference_config=inference, wait=False,
               **_settings(port, workers, engine, options))
    follow(state, svc, f"Updating {name}")
    if not state.json:
        state.note(f"Service {name} is {svc.state} at {svc.scoring_uri}", "green")
    state.emit(svc.serialize(), lambda console: console.print(_detail(svc)))


@service.command("delete")
@click.argument("name")
@output_option
@pass_state
def delete(state: State, name: str) -> None:
    """Stop a service and remove it from the workspace."""
    svc = _get(state, name)
    with contextlib.redirect_stdout(sys.stderr):  # the API prints a notice when it raced another delete
        svc.delete()
    state.emit({"name": name, "deleted": True},
               lambda console: console.print(f"Deleted service {name}", markup=False, soft_wrap=True))


# -- az ml's service verbs (``az ml service get-keys -n NAME`` ...) ----------------------------------


def _service_name(name: str | None, name_option: str | None) -> str:
    if (name is None) == (name_option is None):
        raise click.UsageError("Name the service once: as NAME or with --name/-n.")
    return name or name_option


def _name_options(func: Callable) -> Callable:
    func = click.option("--name", "-n", "name_option", default=None, help="The service (az ml's form of NAME).")(func)
    return click.argument("name", required=False)(func)


@service.command("get-logs")
@_name_options
@click.option("--num_lines", "--num-lines", "-l", "num_lines", type=click.IntRange(min=1), default=5000,
              show_default=True, help="How many of the last lines to show.")
@click.option("--init", "-i", "init", is_flag=True, help="The init container's logs, on targets that have one.")
@output_option
@pass_state
def get_logs(state: State, name: str | None, name_option: str | None, num_lines: int, init: bool) -> None:
    """Print the last lines of a service's log (``aml service logs`` is the same)."""
    service_name = _service_name(name, name_option)
    text = _get(state, service_name).get_logs(num_lines=num_lines, init=init)
    state.emit({"name": service_name, "logs": text}, lambda console: click.echo(text, nl=not text.endswith("\n")))


@service.command("get-keys")
@_name_options
@output_option
@pass_state
def get_keys(state: State, name: str | None, name_option: str | None) -> None:
    """Print a service's primary and secondary keys (as JSON with -o json)."""
    primary, secondary = _get(state, _service_name(name, name_option)).get_keys()
    state.emit({"primaryKey": primary, "secondaryKey": secondary},
               lambda console: click.echo(f"primaryKey: {primary}\nsecondaryKey: {secondary}"))


@service.command("regen-key")
@_name_options
@click.option("--key", "-k", required=True, metavar="Primary|Secondary", help="Which key to regenerate.")
@click.option("--set-key", "-s", "set_key", default=None,
              help="The value to set instead of a random one (keep it out of shell history: prefer the default).")
@output_option
@pass_state
def regen_key(state: State, name: str | None, name_option: str | None, key: str, set_key: str | None) -> None:
    """Regenerate (or set) a service's primary or secondary key, and print both keys."""
    svc = _get(state, _service_name(name, name_option))
    svc.regen_key(key, set_key=set_key)
    primary, secondary = svc.get_keys()
    state.emit({"primaryKey": primary, "secondaryKey": secondary},
               lambda console: click.echo(f"primaryKey: {primary}\nsecondaryKey: {secondary}"))
