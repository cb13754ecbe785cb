"""Finding providers and calling their hooks.

The core never calls ``pm.hook`` directly: :class:`Hooks` is the typed facade that checks
capabilities first, passes keyword arguments only, and turns "nobody answered" into
:class:`~aml_core.errors.NoProviderError`.
"""

from __future__ import annotations

import functools
import os
import sys
from typing import Any, Iterable

import pluggy

from aml_core import hookspecs
from aml_core.capabilities import OPERATION_CAPABILITY
from aml_core.errors import AmlError, Conflict, NoProviderError, NotSupported
from aml_core.records import TargetKind

ENTRY_POINT_GROUP = "aml.providers"

#: Modules registered before any entry point: the core's own implementations.
DEFAULT_PLUGINS = ("aml_core.registry",)


def get_plugin_manager(
    *, load_entrypoints: bool = True, blocked: Iterable[str] = ()
) -> pluggy.PluginManager:
    """A fresh plugin manager with the core's plugins and every installed provider.

    ``AML_DISABLE_PLUGINS`` (comma-separated entry-point names) blocks providers;
    ``AML_TRACE_PLUGINS=1`` prints every hook call to stderr.
    """
    pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    blocked = set(blocked) | {
        name.strip() for name in os.environ.get("AML_DISABLE_PLUGINS", "").split(",") if name.strip()
    }
    for name in blocked:
        pm.set_blocked(name)
    for module_name in DEFAULT_PLUGINS:
        module = __import__(module_name, fromlist=["_"])
        pm.register(module, name=module_name)
    if load_entrypoints:
        try:
            pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
        except Exception as exc:  # a provider that fails to import must not hide which one it was
            raise AmlError(
                f"A provider in the {ENTRY_POINT_GROUP!r} entry-point group failed to load: "
                f"{type(exc).__name__}: {exc}. Reinstall it, or block it with AML_DISABLE_PLUGINS=<name>."
            ) from exc
    # A misspelled hook name in any provider fails here, at start-up, not silently later.
    pm.check_pending()
    if os.environ.get("AML_TRACE_PLUGINS"):
        pm.add_hookcall_monitoring(
            lambda name, impls, kwargs: print(f"aml: calling {name} on {[i.plugin_name for i in impls]}", file=sys.stderr),
            lambda outcome, name, impls, kwargs: None,
        )
    return pm


class Hooks:
    """The typed facade over the plugin manager."""

    def __init__(self, pm: pluggy.PluginManager) -> None:
        self.pm = pm
        self.kinds: dict[str, TargetKind] = {}
        self._announce_kinds()

    def _announce_kinds(self) -> None:
        owners: dict[str, str] = {}

        def add(kind: TargetKind) -> None:
            if kind.name in self.kinds:
                raise Conflict(
                    f"Two providers serve the target kind {kind.name!r}: "
                    f"{' and '.join(sorted((owners[kind.name], kind.provider)))}. Uninstall one, or block it with "
                    f"AML_DISABLE_PLUGINS."
                )
            self.kinds[kind.name] = kind
            owners[kind.name] = kind.provider

        self.pm.hook.aml_target_kinds(add=add)

    # -- helpers ---------------------------------------------------------------------

    def target(self, kind: str) -> TargetKind:
        try:
            return self.kinds[kind]
        except KeyError:
            raise NoProviderError(kind, list(self.kinds)) from None

    def require(self, kind: str, operation: str) -> TargetKind:
        """The target kind, after checking it offers ``operation``."""
        target = self.target(kind)
        flag = OPERATION_CAPABILITY.get(operation)
        if flag and not getattr(target.capabilities, flag):
            raise NotSupported(kind, operation, f"(provider {target.provider} does not declare {flag!r})")
        return target

    def _first(self, kind: str, result: Any) -> Any:
        if result is None:
            raise NoProviderError(kind, list(self.kinds))
        return result

    # -- hooks -----------------------------------------------------------------------

    def register(self, *, workspace, request):
        result = self.pm.hook.aml_register(workspace=workspace, request=request)
        if result is None:
            raise NoProviderError(f"model registry backend {workspace.backend}", list(self.kinds))
        return result

    def package(self, *, workspace, request):
        self.require(request.kind, "package")
        return self._first(request.kind, self.pm.hook.aml_package(workspace=workspace, request=request))

    def provision(self, *, workspace, request):
        self.require(request.kind, "provision")
        return self._first(request.kind, self.pm.hook.aml_provision(workspace=workspace, request=request))

    def compute_delete(self, *, workspace, compute, detach):
        self.require(compute.kind, "provision")
        return self._first(
            compute.kind, self.pm.hook.aml_compute_delete(workspace=workspace, compute=compute, detach=detach)
        )

    def deploy(self, *, workspace, spec):
        self.require(spec.kind, "deploy")
        return self._first(spec.kind, self.pm.hook.aml_deploy(workspace=workspace, spec=spec))

    def status(self, *, workspace, service):
        self.require(service.kind, "status")
        return self._first(service.kind, self.pm.hook.aml_status(workspace=workspace, service=service))

    def logs(self, *, workspace, service, num_lines, init):
        self.require(service.kind, "logs")
        return self._first(
            service.kind,
            self.pm.hook.aml_logs(workspace=workspace, service=service, num_lines=num_lines, init=init),
        )

    def update(self, *, workspace, service, spec):
        self.require(service.kind, "update")
        return self._first(service.kind, self.pm.hook.aml_update(workspace=workspace, service=service, spec=spec))

    def delete(self, *, workspace, service):
        self.require(service.kind, "delete")
        return self._first(service.kind, self.pm.hook.aml_delete(workspace=workspace, service=service))

    def auth(self, *, workspace, service, request):
        self.require(service.kind, request.action)
        return self._first(service.kind, self.pm.hook.aml_auth(workspace=workspace, service=service, request=request))

    def scale(self, *, workspace, service, request, deployment_config=None):
        self.require(service.kind, "scale")
        if request.autoscale_enabled or any(v is not None for v in (
                request.autoscale_min_replicas, request.autoscale_max_replicas, request.autoscale_target_utilization)):
            self.require(service.kind, "autoscale")
        return self._first(service.kind, self.pm.hook.aml_scale(workspace=workspace, service=service, request=request,
                                                                deployment_config=deployment_config))

    def traffic(self, *, workspace, service, split):
        self.require(service.kind, "traffic")
        return self._first(service.kind, self.pm.hook.aml_traffic(workspace=workspace, service=service, split=split))


@functools.lru_cache(maxsize=1)
def default_hooks() -> Hooks:
    """The process-wide facade over every installed provider (built once, on first use)."""
    return Hooks(get_plugin_manager())


def provider_distributions(pm: pluggy.PluginManager) -> dict[str, tuple[str, str]]:
    """Plugin name -> (distribution name, version), for plugins loaded from entry points."""
    found = {}
    for plugin, dist in pm.list_plugin_distinfo():
        found[pm.get_name(plugin)] = (dist.project_name, dist.version)
    return found
