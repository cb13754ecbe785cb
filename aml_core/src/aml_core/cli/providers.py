"""``aml providers`` (alias ``aml plugins list``): what is installed and what each part can do."""

from __future__ import annotations

from importlib import metadata
from typing import Any

import click
from rich.table import Table

from aml_core.cli._common import State, output_option, pass_state


def _core_version() -> str:
    try:
        return metadata.version("aml-core")
    except metadata.PackageNotFoundError:
        from aml_core import __version__

        return __version__


def _kinds_of(pm, plugin) -> list[Any]:
    """The target kinds one plugin announces (its own ``aml_target_kinds`` and nobody else's)."""
    others = [p for p in pm.get_plugins() if p is not plugin]
    announced: list[Any] = []
    pm.subset_hook_caller("aml_target_kinds", remove_plugins=others)(add=announced.append)
    return announced


def collect_providers() -> list[dict[str, Any]]:
    """One entry per plugin: loaded ones (built-in or from ``aml.providers``) and blocked ones."""
    from aml_core.plugins import DEFAULT_PLUGINS, ENTRY_POINT_GROUP, get_plugin_manager, provider_distributions

    pm = get_plugin_manager()
    distributions = provider_distributions(pm)
    entries = []
    for plugin in pm.get_plugins():
        name = pm.get_name(plugin)
        builtin = name in DEFAULT_PLUGINS
        dist, version = distributions.get(name) or (("aml-core", _core_version()) if builtin else ("?", "?"))
        kinds = [
            {"name": k.name, "description": k.description, "provider": k.provider,
             "capabilities": k.capabilities.names()}
            for k in _kinds_of(pm, plugin)
        ]
        entries.append({
            "name": name,
            "distribution": dist,
            "version": version,
            "builtin": builtin,
            "status": "loaded",
            "target_kinds": kinds,
            "hooks": sorted(caller.name for caller in pm.get_hookcallers(plugin) or ()),
            "module": getattr(plugin, "__name__", type(plugin).__name__),
        })
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        if pm.is_blocked(ep.name):
            dist = getattr(ep, "dist", None)
            entries.append({
                "name": ep.name,
                "distribution": dist.name if dist else "?",
                "version": dist.version if dist else "?",
                "builtin": False,
                "status": "blocked",
                "target_kinds": [],
                "hooks": [],
                "module": ep.value,
            })
    entries.sort(key=lambda e: (not e["builtin"], e["name"]))
    return entries


def _render(state: State, entries: list[dict[str, Any]]) -> None:
    def render(console) -> None:
        table = Table()
        table.add_column("Plugin", overflow="fold")
        table.add_column("Distribution", overflow="fold")
        table.add_column("Version")
        table.add_column("Target kinds", overflow="fold")
        table.add_column("Capabilities", overflow="fold")
        table.add_column("Hooks", overflow="fold")
        for entry in entries:
            kinds = "\n".join(k["name"] for k in entry["target_kinds"]) or "-"
            caps = "\n".join(", ".join(k["capabilities"]) or "-" for k in entry["target_kinds"]) or "-"
            hooks = ", ".join(h.removeprefix("aml_") for h in entry["hooks"]) or "-"
            if entry["status"] != "loaded":
                hooks = f"({entry['status']}: AML_DISABLE_PLUGINS)"
            table.add_row(entry["name"], entry["distribution"], entry["version"], kinds, caps, hooks)
        console.print(table)
        if not any(e["target_kinds"] for e in entries):
            state.note("No target provider is installed. Install one, e.g. pip install aml-provider-local", "yellow")

    state.emit(entries, render)


@click.command("providers")
@output_option
@pass_state
def providers(state: State) -> None:
    """List installed providers: distribution, version, target kinds, capabilities and hooks."""
    _render(state, collect_providers())


@click.group("plugins")
def plugins() -> None:
    """Inspect plugins (providers)."""


@plugins.command("list")
@output_option
@pass_state
def plugins_list(state: State) -> None:
    """List installed providers (the same as `aml providers`)."""
    _render(state, collect_providers())
