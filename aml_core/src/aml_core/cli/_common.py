"""What every command shares: the invocation state, output rendering and argument parsing.

Output rule: data goes to stdout (a rich table, or with ``-o json`` exactly one JSON
document); everything else (progress, warnings, errors) goes to stderr.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, Callable

import click
from rich.console import Console

OUTPUT_FORMATS = ("table", "json")


class State:
    """One invocation's settings, built by the root group and found with ``click.pass_obj``."""

    def __init__(self) -> None:
        self.workspace_path: Path | None = None
        self.output: str = "table"
        self.debug: bool = os.environ.get("AML_DEBUG", "") not in ("", "0", "false", "False")
        #: the service (or other object) the command is about, named in translated advice
        self.subject: str | None = None
        self._workspace = None

    # -- the workspace, opened only by commands that need one ----------------------------

    @property
    def workspace(self):
        if self._workspace is None:
            from aml_core.workspace import Workspace

            self._workspace = Workspace.from_config(self.workspace_path)
        return self._workspace

    # -- consoles (made per call so they follow whatever sys.stdout/stderr is now) --------

    @property
    def out(self) -> Console:
        return _console(stderr=False)

    @property
    def err(self) -> Console:
        return _console(stderr=True)

    @property
    def json(self) -> bool:
        return self.output == "json"

    def emit(self, data: Any, render: Callable[[Console], None]) -> None:
        """Print ``data`` as one JSON document, or call ``render`` for the human form."""
        if self.json:
            click.echo(json.dumps(data, indent=2, default=str))
        else:
            render(self.out)

    def note(self, text: str, style: str = "") -> None:
        """A human message on stderr (never mixed into the data on stdout)."""
        self.err.print(text, style=style or None, markup=False, highlight=False, soft_wrap=True)


def _console(*, stderr: bool) -> Console:
    stream = sys.stderr if stderr else sys.stdout
    console = Console(file=stream, highlight=False)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        # Piped output: do not fold table cells at the default 80 columns.
        console = Console(file=stream, highlight=False, width=200)
    return console


def _set_output(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    if value:
        ctx.ensure_object(State).output = value


def output_option(func: Callable) -> Callable:
    """``-o/--output table|json`` on a command (the global one works as well)."""
    return click.option(
        "-o", "--output",
        type=click.Choice(OUTPUT_FORMATS),
        default=None,
        expose_value=False,
        callback=_set_output,
        help="Output format: table (default) or json (one JSON document on stdout).",
    )(func)


pass_state = click.make_pass_decorator(State, ensure=True)


# -- argument parsing ---------------------------------------------------------------------


def parse_pairs(values: tuple[str, ...], option: str, *, require_value: bool = True) -> list[str | tuple[str, str]]:
    """``k=v`` strings -> ``(k, v)``; a bare ``k`` stays a string when ``require_value`` is off."""
    parsed: list[str | tuple[str, str]] = []
    for raw in values:
        key, sep, value = raw.partition("=")
        if not key:
            raise click.BadParameter(f"{raw!r}: the key is empty (expected KEY=VALUE).", param_hint=option)
        if not sep:
            if require_value:
                raise click.BadParameter(f"{raw!r} is not KEY=VALUE.", param_hint=option)
            parsed.append(key)
        else:
            parsed.append((key, value))
    return parsed


def parse_model_ref(text: str, *, require_version: bool = False, param_hint: str = "NAME[:VERSION]") -> tuple[str, int | None]:
    """``name`` or ``name:3`` -> ``(name, version)``."""
    name, sep, version = text.partition(":")
    if not name:
        raise click.BadParameter(f"{text!r} has no model name.", param_hint=param_hint)
    if not sep or not version:
        if require_version:
            raise click.BadParameter(
                f"{text!r} has no version. Give it explicitly, e.g. {name}:1 (see `aml model list --name {name}`).",
                param_hint=param_hint,
            )
        return name, None
    if not version.isdigit() or int(version) < 1:
        raise click.BadParameter(f"{text!r}: the version must be a positive integer.", param_hint=param_hint)
    return name, int(version)


def parse_setting(raw: str, option: str) -> tuple[str, Any]:
    """``key=value`` with the value read as JSON when it parses (``3``, ``true``), else a string."""
    key, sep, value = raw.partition("=")
    if not key or not sep:
        raise click.BadParameter(f"{raw!r} is not KEY=VALUE.", param_hint=option)
    try:
        return key.replace("-", "_"), json.loads(value)
    except ValueError:
        return key.replace("-", "_"), value


def format_mapping(mapping: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(mapping.items())) or "-"


def human_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"


# -- API advice in CLI terms --------------------------------------------------------------

#: (pattern, replacement) turning the API's advice in error messages into the CLI's own
#: words; ``{name}`` is the service the command is about (or NAME). Longest phrases first.
CLI_TERMS: tuple[tuple[str, str], ...] = (
    (r"More information can be found by calling \.get_logs\(\) on the webservice object\.",
     "Run `aml service logs {name}` to see why."),
    (r"(?:[Cc]all |[Cc]heck |[Ss]ee )?service\.get_logs\(\)(?: or `aml service logs [^`]+`)?",
     "see `aml service logs {name}`"),
    (r"[Cc]heck service\.state and", "check `aml service show {name}` and"),
    (r"\(service\.wait_for_deployment\(\)\)", "(`aml service show {name}`)"),
    (r"call update_deployment_state\(\) later(?: to see its state)?", "run `aml service show {name}` later"),
    (r"deployment_target=<an AksCompute>", "--compute-target NAME"),
    (r"overwrite=True", "--overwrite"),
    (r"LocalWebservice\.deploy_configuration\(port=\.\.\.\)", "--port"),
    (r"Raise startup_timeout in deploy_configuration", "Raise it with --option startup_timeout=SECONDS"),
    (r"wait_for_completion\(\) first", "wait for `aml compute show` to say Succeeded first"),
)


def cli_terms(text: str, name: str | None = None) -> str:
    """``text`` with the API's advice (``overwrite=True``, ``service.get_logs()`` ...) in CLI terms."""
    import re

    for pattern, replacement in CLI_TERMS:
        text = re.sub(pattern, replacement.replace("{name}", name or "NAME"), text)
    return text
