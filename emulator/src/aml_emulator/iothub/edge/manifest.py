"""The ``$edgeAgent`` deployment document, checked against the IoT Edge schema.

A document that fails here is reported in the agent's ``lastDesiredStatus`` with the code IoT
Edge uses (400 format error, 412 unsupported schema version, 417 empty configuration) and is
not applied: the modules already running keep running.
"""

from __future__ import annotations

import json
import re
from typing import Any

import attrs

SCHEMA_VERSIONS = ("1.0", "1.1")
RESTART_POLICIES = ("never", "on-failure", "on-unhealthy", "always")
STATUSES = ("running", "stopped")
DEFAULT_STARTUP_ORDER = 4294967295
_MODULE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9\-_.]{0,63}$")


class ManifestError(ValueError):
    """A deployment the agent refuses; ``code`` is the ``lastDesiredStatus`` code."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


@attrs.frozen
class ModuleSpec:
    name: str
    image: str
    status: str = "running"
    restart_policy: str = "always"
    startup_order: int = DEFAULT_STARTUP_ORDER
    env: dict[str, str] = attrs.field(factory=dict)
    #: host port for the container's first published port (``HostConfig.PortBindings``)
    host_port: int | None = None
    version: str = ""
    image_pull_policy: str = "on-create"
    create_options: str = "{}"

    def settings(self) -> dict[str, Any]:
        return {"image": self.image, "createOptions": self.create_options}


@attrs.frozen
class Deployment:
    schema_version: str
    modules: tuple[ModuleSpec, ...]
    #: ``{registry address: (username, password)}``
    registry_credentials: dict[str, tuple[str, str]] = attrs.field(factory=dict, repr=False)

    def ordered(self) -> list[ModuleSpec]:
        return sorted(self.modules, key=lambda m: (m.startup_order, m.name))


def _create_options(name: str, raw: Any) -> tuple[dict[str, str], int | None, str]:
    if raw in (None, ""):
        return {}, None, "{}"
    if isinstance(raw, dict):  # tolerated: some tools send the object itself
        text = json.dumps(raw)
        options = raw
    elif isinstance(raw, str):
        text = raw
        try:
            options = json.loads(raw)
        except ValueError as exc:
            raise ManifestError(400, f"module {name!r}: settings.createOptions is not valid JSON ({exc}); "
                                     f"it must be a stringified Docker create-options object") from None
    else:
        raise ManifestError(400, f"module {name!r}: settings.createOptions must be a string of JSON")
    if not isinstance(options, dict):
        raise ManifestError(400, f"module {name!r}: settings.createOptions must be a JSON object")
    env = {}
    for item in options.get("Env") or []:
        key, _sep, value = str(item).partition("=")
        env[key] = value
    host_port = None
    bindings = ((options.get("HostConfig") or {}).get("PortBindings") or {})
    for _container_port, hosts in bindings.items():
        for host in hosts or []:
            port = str((host or {}).get("HostPort", ""))
            if port:
                if not port.isdigit() or not 0 < int(port) < 65536:
                    raise ManifestError(400, f"module {name!r}: HostPort {port!r} is not a port number")
                host_port = int(port)
                break
        if host_port:
            break
    return env, host_port, text


def _module(name: str, spec: Any, *, system: bool = False) -> ModuleSpec:
    if not isinstance(spec, dict):
        raise ManifestError(400, f"module {name!r} must be an object")
    if not system and not _MODULE_NAME.match(name):
        raise ManifestError(400, f"module name {name!r} is invalid: use letters, digits, '-', '_' or '.'")
    if spec.get("type", "docker") != "docker":
        raise ManifestError(400, f"module {name!r}: type must be 'docker'")
    settings = spec.get("settings")
    if not isinstance(settings, dict) or not isinstance(settings.get("image"), str) or not settings["image"]:
        raise ManifestError(400, f"module {name!r} has no settings.image; give the image to run")
    status = spec.get("status", "running")
    if status not in STATUSES:
        raise ManifestError(400, f"module {name!r}: status {status!r} must be one of {', '.join(STATUSES)}")
    policy = spec.get("restartPolicy", "always")
    if policy not in RESTART_POLICIES:
        raise ManifestError(400, f"module {name!r}: restartPolicy {policy!r} must be one of "
                                 f"{', '.join(RESTART_POLICIES)}")
    order = spec.get("startupOrder", DEFAULT_STARTUP_ORDER)
    if not isinstance(order, int) or isinstance(order, bool) or not 0 <= order <= DEFAULT_STARTUP_ORDER:
        raise ManifestError(400, f"module {name!r}: startupOrder must be an integer 0-4294967295")
    env = {}
    for key, value in (spec.get("env") or {}).items():
        if not isinstance(value, dict) or "value" not in value:
            raise ManifestError(400, f"module {name!r}: env.{key} must be an object {{\"value\": ...}}")
        env[key] = str(value["value"])
    option_env, host_port, options_text = _create_options(name, settings.get("createOptions"))
    return ModuleSpec(name=name, image=settings["image"], status=status, restart_policy=policy,
                      startup_order=order, env={**option_env, **env}, host_port=host_port,
                      version=str(spec.get("version", "")), image_pull_policy=spec.get("imagePullPolicy", "on-create"),
                      create_options=options_text)


def parse_agent_desired(desired: dict[str, Any]) -> Deployment:
    """Check a ``$edgeAgent`` desired document; :class:`ManifestError` says what is wrong."""
    body = {k: v for k, v in desired.items() if not k.startswith("$")}
    if not body:
        raise ManifestError(417, "The $edgeAgent desired properties are empty: apply a deployment manifest.")
    version = body.get("schemaVersion")
    if version not in SCHEMA_VERSIONS:
        raise ManifestError(412, f"schemaVersion {version!r} is not supported; use one of {', '.join(SCHEMA_VERSIONS)}")
    runtime = body.get("runtime")
    if not isinstance(runtime, dict) or runtime.get("type") != "docker":
        raise ManifestError(400, "runtime.type must be 'docker'")
    system = body.get("systemModules")
    if not isinstance(system, dict) or "edgeAgent" not in system or "edgeHub" not in system:
        raise ManifestError(400, "systemModules must define edgeAgent and edgeHub")
    for name in ("edgeAgent", "edgeHub"):
        spec = system[name]
        if not isinstance(spec, dict) or not isinstance((spec.get("settings") or {}).get("image"), str):
            raise ManifestError(400, f"systemModules.{name} has no settings.image")
    credentials: dict[str, tuple[str, str]] = {}
    for cred_name, cred in ((runtime.get("settings") or {}).get("registryCredentials") or {}).items():
        if not isinstance(cred, dict) or not all(isinstance(cred.get(k), str) for k in ("username", "password", "address")):
            raise ManifestError(400, f"registryCredentials.{cred_name} needs username, password and address strings")
        credentials[cred["address"]] = (cred["username"], cred["password"])
    modules = body.get("modules") or {}
    if not isinstance(modules, dict):
        raise ManifestError(400, "modules must be an object of module name -> module")
    return Deployment(schema_version=version, modules=tuple(_module(n, s) for n, s in modules.items()),
                      registry_credentials=credentials)


def check_manifest(modules_content: dict[str, Any]) -> None:
    """What every deployment needs before it is applied: ``$edgeAgent`` and ``$edgeHub``."""
    missing = [m for m in ("$edgeAgent", "$edgeHub") if m not in modules_content]
    if missing:
        raise ManifestError(400, f"The deployment manifest lacks {' and '.join(missing)}; every manifest needs "
                                 f"both $edgeAgent and $edgeHub entries under modulesContent.")
