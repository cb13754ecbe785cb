"""The IoT Edge deployment manifest a service becomes (``modulesContent``).

The scoring module gets the packaged image and ``restartPolicy: always``; external modules
their own images; every registry the device pulls from goes into ``registryCredentials``
(the workspace's registry first). Routes go to ``$edgeHub`` unchanged, so the route language is
the edge hub's to check; a route naming a module that is not in the deployment is refused here
already, naming it.
"""

from __future__ import annotations

import json
import re
from typing import Any

from aml_core.errors import InvalidConfig

EDGE_AGENT_IMAGE = "mcr.microsoft.com/azureiotedge-agent:1.4"
EDGE_HUB_IMAGE = "mcr.microsoft.com/azureiotedge-hub:1.4"
EDGE_HUB_CREATE_OPTIONS = json.dumps({"HostConfig": {"PortBindings": {
    "5671/tcp": [{"HostPort": "5671"}], "8883/tcp": [{"HostPort": "8883"}], "443/tcp": [{"HostPort": "443"}]}}})
STORE_AND_FORWARD_TTL = 7200
REVISION_ENV = "AML_MODULE_REVISION"
_BROKERED = re.compile(r'BrokeredEndpoint\(\s*"/modules/([^/"]+)/inputs/[^"]+"\s*\)', re.IGNORECASE)
_FROM_MODULE = re.compile(r"/messages/modules/([^/\s*]+)", re.IGNORECASE)


def _module(settings: Any, image: str, version: str) -> dict[str, Any]:
    return {"version": version, "type": "docker", "status": "running", "restartPolicy": "always",
            "env": {k: {"value": v} for k, v in settings.env.items()},
            "settings": {"image": image, "createOptions": settings.create_option}}


def _route_text(route: Any) -> str:
    return route["route"] if isinstance(route, dict) else str(route)


def check_routes(routes: dict[str, Any], modules: set[str]) -> None:
    """Refuse routes that name a module the deployment does not have."""
    for name, route in routes.items():
        text = _route_text(route)
        for module in _BROKERED.findall(text) + _FROM_MODULE.findall(text):
            if module not in modules:
                raise InvalidConfig(f"Route {name!r} names module {module!r}, which is not in this deployment "
                                    f"(modules: {', '.join(sorted(modules))}); fix the route or add the module "
                                    f"with external_modules=[IotModuleSettings(...)].")


def build(config: Any, module_image: str, registries: list[tuple[str, str, str]], version: str) -> dict[str, Any]:
    """``modulesContent`` for ``config`` with the scoring module at ``module_image``.

    :param registries: ``(address, username, password)`` the device pulls from.
    """
    modules = {config.aml_module.name: _module(config.aml_module, module_image, version)}
    # the module reports this revision once init() is done, which is what deploy waits for
    modules[config.aml_module.name]["env"][REVISION_ENV] = {"value": version}
    for external in config.external_modules:
        # other modules keep their version, so an update of the model does not restart them
        modules[external.name] = _module(external, external.image_location, "1")
    check_routes(config.routes, set(modules))
    content = _content(registries, modules, dict(config.routes))
    for settings in (config.aml_module, *config.external_modules):
        if settings.properties_desired:
            content[settings.name] = {"properties.desired": dict(settings.properties_desired)}
    return content


def empty(registries: list[tuple[str, str, str]]) -> dict[str, Any]:
    """A deployment with the system modules only and no routes: what ``delete()`` applies."""
    return _content(registries, {}, {})


def _content(registries: list[tuple[str, str, str]], modules: dict[str, Any], routes: dict[str, Any]) -> dict[str, Any]:
    credentials = {f"registry{i}": {"username": user, "password": password, "address": address}
                   for i, (address, user, password) in enumerate(registries)}
    return {
        "$edgeAgent": {"properties.desired": {
            "schemaVersion": "1.1",
            "runtime": {"type": "docker", "settings": {"minDockerVersion": "v1.25", "loggingOptions": "",
                                                        "registryCredentials": credentials}},
            "systemModules": {
                "edgeAgent": {"type": "docker", "settings": {"image": EDGE_AGENT_IMAGE, "createOptions": "{}"}},
                "edgeHub": {"type": "docker", "status": "running", "restartPolicy": "always",
                            "settings": {"image": EDGE_HUB_IMAGE, "createOptions": EDGE_HUB_CREATE_OPTIONS}},
            },
            "modules": modules,
        }},
        "$edgeHub": {"properties.desired": {
            "schemaVersion": "1.1", "routes": routes,
            "storeAndForwardConfiguration": {"timeToLiveSecs": STORE_AND_FORWARD_TTL},
        }},
    }
