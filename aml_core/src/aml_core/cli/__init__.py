"""The ``aml`` command line: a thin layer over the public API.

Exit status: 0 on success; an :class:`~aml_core.errors.AmlError` exits with its class's
``exit_status`` (NotFound 3, Conflict 4, NotSupported 5, InvalidConfig 6 ...) after one red
``Error (<code>): <message>`` line on stderr; usage errors exit 2; anything unexpected exits 1.
``--debug`` (or ``AML_DEBUG=1``) adds the traceback. See ``docs/cli.md``.

Other distributions add subcommands through the ``aml.cli`` entry-point group: each entry
point names a click command or group, added under the entry point's name.
"""

from __future__ import annotations

import sys
import threading
import traceback
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import click
from rich.text import Text

from aml_core.cli._common import OUTPUT_FORMATS, State, _console, cli_terms
from aml_core.errors import AmlError

EXTENSION_GROUP = "aml.cli"
#: exit status for an unexpected exception (a bug, or an environment problem)
EXIT_UNEXPECTED = 1
#: exit status for Ctrl-C (the shell convention, 128 + SIGINT)
EXIT_INTERRUPTED = 130


class AmlGroup(click.Group):
    """The root group: loads ``aml.cli`` extensions lazily and maps exceptions to exit codes."""

    # -- extensions ----------------------------------------------------------------------
    #
    # Loaded once per invocation (cached on the root context), and only when a name is not
    # a built-in command or the command list is needed (help), so `aml model list` never
    # imports an extension.

    def _extensions(self, ctx: click.Context) -> dict[str, click.Command]:
        meta = ctx.find_root().meta
        if EXTENSION_GROUP not in meta:
            meta[EXTENSION_GROUP] = load_extensions(reserved=set(self.commands))
        return meta[EXTENSION_GROUP]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is None:
            command = self._extensions(ctx).get(cmd_name)
        return command

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self._extensions(ctx)})

    # -- exit codes ----------------------------------------------------------------------

    def main(self, args: Any = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
        state = extra.pop("obj", None) or State()
        try:
            result = super().main(args=args, prog_name=prog_name, complete_var=complete_var,
                                  standalone_mode=False, obj=state, **extra)
            code = result if isinstance(result, int) else 0
        except click.ClickException as exc:  # usage errors (2) and click's own errors
            exc.show()
            code = exc.exit_code
        except click.exceptions.Abort as exc:  # click's wrapper around Ctrl-C and end of input
            _report_interrupt("Interrupted." if isinstance(exc.__cause__, KeyboardInterrupt) else "Aborted.")
            code = EXIT_INTERRUPTED
        except AmlError as exc:
            code = _report_aml_error(exc, state)
        except KeyboardInterrupt:
            _report_interrupt("Interrupted.")
            code = EXIT_INTERRUPTED
        except Exception as exc:
            code = _report_unexpected(exc, state)
        if standalone_mode:
            sys.exit(code)
        return code


def load_extensions(reserved: set[str] = frozenset()) -> dict[str, click.Command]:
    """Every click command in the ``aml.cli`` entry-point group, by entry-point name.

    A broken extension (import error, not a click command, a name taken by a built-in
    command) is skipped with a warning on stderr; it never stops the CLI.
    """
    found: dict[str, click.Command] = {}
    for ep in sorted(entry_points(group=EXTENSION_GROUP), key=lambda e: e.name):
        dist = getattr(ep, "dist", None)
        origin = f"{ep.value}, from {dist.name} {dist.version}" if dist else ep.value
        if ep.name in reserved or ep.name in found:
            _warn(f"the CLI extension {ep.name!r} ({origin}) clashes with another command of that name; ignored.")
            continue
        try:
            command = ep.load()
        except Exception as exc:
            _warn(f"could not load the CLI extension {ep.name!r} ({origin}): {type(exc).__name__}: {_one_line(exc)}")
            continue
        if not isinstance(command, click.Command):
            _warn(
                f"the CLI extension {ep.name!r} ({origin}) is a {type(command).__name__}, not a click "
                f"command or group; ignored."
            )
            continue
        found[ep.name] = command
    return found


def _report_interrupt(message: str) -> None:
    if any(t.name.startswith("aml-") and t.is_alive() for t in threading.enumerate()):
        # Operations run in non-daemon threads: the process waits for the provider to finish
        # its step, so the workspace never records half a deployment.
        message += " Finishing the operation in progress first so the workspace stays consistent ..."
    _console(stderr=True).print(Text(message, style="red"), soft_wrap=True)


def _warn(text: str) -> None:
    _console(stderr=True).print(Text(f"aml: warning: {text}", style="yellow"), soft_wrap=True)


def _one_line(text: str) -> str:
    return " ".join(part.strip() for part in str(text).splitlines() if part.strip())


def _report_aml_error(exc: AmlError, state: State) -> int:
    err = _console(stderr=True)
    if state.debug:
        traceback.print_exception(exc, file=sys.stderr)
    message = cli_terms(_one_line(exc), state.subject) or type(exc).__name__
    err.print(Text(f"Error ({exc.code}): {message}", style="red"), soft_wrap=True)
    return int(getattr(exc, "exit_status", EXIT_UNEXPECTED) or EXIT_UNEXPECTED)


def _report_unexpected(exc: BaseException, state: State) -> int:
    err = _console(stderr=True)
    if state.debug:
        traceback.print_exception(exc, file=sys.stderr)
        hint = ""
    else:
        hint = " Run again with --debug (or AML_DEBUG=1) for the traceback."
    err.print(
        Text(f"Unexpected error: {type(exc).__name__}: {_one_line(exc)}.{hint}", style="red"), soft_wrap=True
    )
    return EXIT_UNEXPECTED


def _set_workspace(ctx: click.Context, param: click.Parameter, value: Path | None) -> None:
    if value is not None:
        ctx.ensure_object(State).workspace_path = value


def _set_root_output(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    if value:
        ctx.ensure_object(State).output = value


def _set_debug(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if value:
        ctx.ensure_object(State).debug = True


@click.group(cls=AmlGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--workspace", "-w", type=click.Path(file_okay=False, path_type=Path), default=None, expose_value=False,
    callback=_set_workspace, is_eager=True,
    help="Workspace directory. Default: $AML_WORKSPACE, else the current directory or a parent holding a workspace.",
)
@click.option(
    "-o", "--output", type=click.Choice(OUTPUT_FORMATS), default=None, expose_value=False,
    callback=_set_root_output, help="Output format for every command: table (default) or json.",
)
@click.option(
    "--debug", is_flag=True, default=False, expose_value=False, callback=_set_debug, is_eager=True,
    help="Show tracebacks on errors (also AML_DEBUG=1).",
)
@click.version_option(package_name="aml-core", prog_name="aml")
def cli() -> None:
    """Register models and deploy them as scoring services, locally or on a cloud target."""


def _register_builtin_commands() -> None:
    from aml_core.cli.image import image
    from aml_core.cli.model import model
    from aml_core.cli.providers import plugins, providers
    from aml_core.cli.service import service
    from aml_core.cli.workspace import workspace

    for command in (workspace, model, image, service, providers, plugins):
        cli.add_command(command)
    from aml_core.cli.computetarget import computetarget
    from aml_core.cli.environment import environment

    cli.add_command(computetarget)
    cli.add_command(environment)


_register_builtin_commands()


def main(argv: list[str] | None = None) -> int:
    """The console-script entry point; returns the exit status."""
    return cli.main(args=argv, prog_name="aml", standalone_mode=False)
