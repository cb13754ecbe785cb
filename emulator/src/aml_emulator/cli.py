"""``aml emulator ...``: run the emulator as a long-lived process and ask whether it runs.

The group is registered under the ``aml.cli`` entry-point group, so the core's ``aml``
command adds it as a subcommand without importing the emulator. ``python -m aml_emulator``
runs the same group on its own.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import threading
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click
from rich.console import Console
from rich.table import Table

from aml_core.errors import AmlError
from aml_core.profiles import ENV_PROFILE

from aml_emulator.emulator import DEFAULT_PROFILE_NAME, Emulator, state_lock_holder

#: where ``start`` and ``status`` look when ``--state`` is not given
ENV_STATE = "AML_EMULATOR_STATE"
RUN_FILE = "run.json"


def default_state_dir() -> Path:
    configured = os.environ.get(ENV_STATE)
    return Path(configured).expanduser() if configured else Path.home() / ".aml" / "emulator"


state_option = click.option(
    "--state", "state", type=click.Path(file_okay=False, path_type=Path), default=None,
    help=f"State directory (default ${ENV_STATE}, else ~/.aml/emulator).",
)


@click.group("emulator")
def emulator() -> None:
    """Run the offline emulator of the cloud services (registry, Azure Resource Manager, cluster)."""


@emulator.command()
@state_option
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on. Anything but loopback exposes the emulator to other machines.")
@click.option("--profile-name", default=DEFAULT_PROFILE_NAME, show_default=True,
              help="Name of the cloud profile to write (select it with AML_PROFILE).")
@click.option("--service", "services", multiple=True,
              type=click.Choice(["registry", "arm", "cluster", "iothub", "storage", "servicebus"]),
              help="Start only these services (repeatable; default: all installed but iothub, storage "
                   "(Azurite) and servicebus, which start only when named).")
def start(state: Path | None, host: str, profile_name: str, services: tuple[str, ...]) -> None:
    """Start every service and run until SIGINT or SIGTERM.

    Prints endpoints and credentials and writes the cloud profile the API and CLI use.
    Stopping removes nothing durable.
    """
    state_dir = state or default_state_dir()
    console = Console(highlight=False)
    stop = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    run_file = state_dir / RUN_FILE
    try:
        # An AmlError (state locked by another emulator, malformed state) propagates to the
        # caller, `aml` or `python -m aml_emulator`, which prints it and exits with its status.
        emu = Emulator(state_dir, host=host, services=services or None)
        emu.start()
        try:
            needed = {"registry", "arm"}
            profile_file = None
            if needed <= set(emu.services):
                profile_file = emu.profile(profile_name).save()
            info = {
                "pid": os.getpid(),
                "state_dir": str(state_dir),
                "endpoints": emu.endpoints(),
                "profile": str(profile_file) if profile_file else None,
            }
            (state_dir / RUN_FILE).write_text(json.dumps(info, indent=2) + "\n")
            _print_started(console, emu, profile_name, profile_file)
            sys.stdout.flush()
            while not stop.wait(1.0):
                pass
            console.print("Stopping the emulator ...")
        finally:
            run_file.unlink(missing_ok=True)
            emu.stop()
        console.print(f"Stopped. State kept in {state_dir}", soft_wrap=True)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _print_started(console: Console, emu: Emulator, profile_name: str, profile_file: Path | None) -> None:
    table = Table(title="aml emulator", title_justify="left")
    table.add_column("Service")
    table.add_column("Endpoint", overflow="fold")
    for name, url in emu.endpoints().items():
        table.add_row(name, url)
    console.print(table)
    lines: list[tuple[str, str]] = [("State", str(emu.state_dir))]
    if "arm" in emu.services:
        lines += [
            ("Subscription", emu.subscription_id),
            ("Resource group", emu.resource_group),
            ("ARM CA bundle", str(emu.ca_bundle)),
            ("ARM token", emu.arm_token),
        ]
    if "registry" in emu.services:
        credentials = emu.registry.credentials
        passwords = credentials.passwords
        lines += [
            ("Registry", f"{emu.registry_name} at {emu.registry.login_server}"),
            ("Registry username", credentials.username),
            ("Registry password", passwords["password"]),
            ("Registry password2", passwords["password2"]),
        ]
    if "cluster" in emu.services and emu.cluster.kubeconfig_path is not None:
        lines.append(("Kubeconfig", str(emu.cluster.kubeconfig_path)))
    if profile_file is not None:
        lines.append(("Profile", f"{profile_file} (use it with {ENV_PROFILE}={profile_name})"))
    for label, value in lines:
        console.print(f"[bold]{label}:[/] {value}", soft_wrap=True)
    console.print("Emulator ready. Press Ctrl+C to stop.", soft_wrap=True)


def _reachable(url: str) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname, parts.port), timeout=1.0):
            return True
    except OSError:
        return False


@emulator.command()
@state_option
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON (no secrets).")
def status(state: Path | None, as_json: bool) -> None:
    """Say whether an emulator runs on the state directory, and where its services listen.

    Exits 0 when it runs, 1 when it does not.
    """
    state_dir = state or default_state_dir()
    holder = state_lock_holder(state_dir)
    info: dict[str, Any] = {"running": False, "state_dir": str(state_dir)}
    run_file = state_dir / RUN_FILE
    if holder is not None and run_file.exists():
        try:
            info |= json.loads(run_file.read_text())
        except ValueError:
            pass
        info["running"] = True
        info["reachable"] = {name: _reachable(url) for name, url in info.get("endpoints", {}).items()}
    if as_json:
        click.echo(json.dumps(info, indent=2))
    else:
        console = Console(highlight=False)
        if not info["running"]:
            command = "aml emulator start" + ("" if state is None else f" --state {state_dir}")
            console.print(f"No emulator is running on {state_dir}. Start one with `{command}`.",
                          soft_wrap=True)
        else:
            table = Table(title=f"aml emulator (pid {info.get('pid')})", title_justify="left")
            table.add_column("Service")
            table.add_column("Endpoint", overflow="fold")
            table.add_column("Reachable")
            for name, url in info.get("endpoints", {}).items():
                table.add_row(name, url, "yes" if info["reachable"].get(name) else "no")
            console.print(table)
            if info.get("profile"):
                console.print(f"Profile: {info['profile']}", soft_wrap=True)
    sys.exit(0 if info["running"] else 1)


def main(argv: list[str] | None = None) -> None:
    """``python -m aml_emulator``: the group on its own, with the core CLI's exit statuses."""
    try:
        emulator.main(args=argv, prog_name="python -m aml_emulator", standalone_mode=False)
    except click.ClickException as error:
        error.show()
        sys.exit(error.exit_code)
    except click.exceptions.Abort:
        sys.exit(130)
    except AmlError as error:
        Console(stderr=True, highlight=False).print(
            f"[bold red]Error ({error.code}):[/] {error}", soft_wrap=True)
        sys.exit(error.exit_status)


__all__ = ["emulator", "main"]
