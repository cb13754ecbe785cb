"""The IoT Edge target's deployment configuration and module settings (azureml-core's names:
``IotWebservice.deploy_configuration``, ``IotBaseModuleSettings``, ``IotModuleSettings``)."""

from __future__ import annotations

import json
import re
from typing import Any

import attrs

from aml_core.errors import InvalidConfig

_MODULE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9\-_]{0,62}$")
_DEVICE_ID = re.compile(r"^[A-Za-z0-9\-:.+%_#*?!(),=@;$']{1,128}$")


def _check_name(name: Any) -> str:
    if not isinstance(name, str) or not _MODULE_NAME.match(name) or name.startswith("$"):
        raise InvalidConfig(f"Module name {name!r} is invalid: use 1-63 letters, digits, '-' or '_', "
                            f"starting with a letter or digit.")
    return name


def _create_option_text(value: Any) -> str:
    if value is None:
        return "{}"
    if isinstance(value, dict):
        return json.dumps(value)
    if isinstance(value, str):
        try:
            parsed = json.loads(value)
        except ValueError as exc:
            raise InvalidConfig(f"create_option is not valid JSON ({exc}); give a dict of Docker create "
                                f"options or its JSON text.") from None
        if not isinstance(parsed, dict):
            raise InvalidConfig("create_option must be a JSON object of Docker create options.")
        return value
    raise InvalidConfig("create_option must be a dict or a JSON string of Docker create options.")


@attrs.frozen(kw_only=True)
class IotBaseModuleSettings:
    """The scoring module: its name, environment, Docker create options and module twin
    desired properties. The image is the one packaged from the model and entry script."""

    name: str = attrs.field(converter=_check_name)
    env: dict[str, str] = attrs.field(factory=dict, converter=lambda v: {str(k): str(x) for k, x in (v or {}).items()})
    create_option: str = attrs.field(default="{}", converter=_create_option_text)
    properties_desired: dict[str, Any] = attrs.field(factory=dict, converter=lambda v: dict(v or {}))

    def to_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


@attrs.frozen(kw_only=True)
class IotModuleSettings(IotBaseModuleSettings):
    """Another module of the deployment (a sensor, a filter): the same settings plus its image."""

    image_location: str = attrs.field(default="")

    @image_location.validator
    def _check_image(self, attribute: Any, value: str) -> None:
        if not isinstance(value, str) or not value:
            raise InvalidConfig(f"Module {self.name!r} needs image_location (e.g. 'myregistry.azurecr.io/sensor:1').")


@attrs.frozen(kw_only=True)
class AcrCredential:
    """A registry the device pulls from (``location`` is its address); the password is never shown."""

    user: str
    password: str = attrs.field(repr=False)
    location: str


def _modules(value: Any) -> tuple[IotModuleSettings, ...]:
    return tuple(m if isinstance(m, IotModuleSettings) else IotModuleSettings(**m) for m in (value or ()))


def _credentials(value: Any) -> tuple[AcrCredential, ...]:
    out = []
    for item in value or ():
        if isinstance(item, AcrCredential):
            out.append(item)
        elif isinstance(item, dict) and {"user", "password", "location"} <= set(item):
            out.append(AcrCredential(user=item["user"], password=item["password"], location=item["location"]))
        else:
            raise InvalidConfig("acr_credentials must be dicts with 'user', 'password' and 'location'.")
    return tuple(out)


@attrs.frozen(kw_only=True)
class IotServiceDeploymentConfiguration:
    """Where and how a model runs as an IoT Edge module.

    :param device_id: the IoT Edge device the deployment goes to.
    :param routes: ``{name: route}`` for the edge hub, e.g.
        ``{"toModel": 'FROM /messages/modules/sensor/outputs/* INTO BrokeredEndpoint("/modules/model/inputs/input1")'}``;
        a route may also be ``{"route": ..., "priority": 0-9, "timeToLiveSecs": n}``.
    :param aml_module: the scoring module's settings (:class:`IotBaseModuleSettings`).
    :param external_modules: other modules (:class:`IotModuleSettings`).
    :param acr_credentials: ``[{"user", "password", "location"}]`` for registries the device
        pulls from, besides the workspace's own (added automatically).
    :param compute_target_name: the IoT hub (its name under the cloud profile's resource
        group); ``None``: the profile's ``extra["iothub_name"]``, unless
        ``AML_IOTHUB_CONNECTION_STRING`` names the hub directly.
    :param startup_timeout: seconds ``deploy``/``update`` wait for the module to run.
    """

    kind = "iotedge"

    device_id: str = attrs.field()
    routes: dict[str, Any] = attrs.field(converter=lambda v: dict(v or {}))
    aml_module: IotBaseModuleSettings = attrs.field()
    external_modules: tuple[IotModuleSettings, ...] = attrs.field(default=(), converter=_modules)
    acr_credentials: tuple[AcrCredential, ...] = attrs.field(default=(), converter=_credentials)
    tags: dict[str, str] = attrs.field(factory=dict, converter=lambda v: dict(v or {}))
    properties: dict[str, str] = attrs.field(factory=dict, converter=lambda v: dict(v or {}))
    description: str | None = None
    compute_target_name: str | None = None
    startup_timeout: float = 300.0

    @device_id.validator
    def _check_device(self, attribute: Any, value: Any) -> None:
        if not isinstance(value, str) or not _DEVICE_ID.match(value):
            raise InvalidConfig(f"device_id {value!r} is not a valid IoT Hub device id.")

    @routes.validator
    def _check_routes(self, attribute: Any, value: dict[str, Any]) -> None:
        if not value:
            raise InvalidConfig("routes is required: give at least one edge hub route, e.g. "
                                "{'toUpstream': 'FROM /messages/modules/<module>/outputs/* INTO $upstream'}.")

    @aml_module.validator
    def _check_module(self, attribute: Any, value: Any) -> None:
        if not isinstance(value, IotBaseModuleSettings):
            raise InvalidConfig("aml_module is required: IotBaseModuleSettings(name='model', ...).")
        names = [value.name] + [m.name for m in self.external_modules]
        if len(set(names)) != len(names):
            raise InvalidConfig(f"Module names must be unique; got {names}.")

    def to_dict(self) -> dict[str, Any]:
        data = attrs.asdict(self)
        data["external_modules"] = [attrs.asdict(m) for m in self.external_modules]
        data["acr_credentials"] = [attrs.asdict(c) for c in self.acr_credentials]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "IotServiceDeploymentConfiguration":
        fields = {a.name for a in attrs.fields(cls)}
        values = {k: v for k, v in data.items() if k in fields}
        values["aml_module"] = IotBaseModuleSettings(**data["aml_module"])
        return cls(**values)

    def evolve_settings(self, **settings: Any) -> "IotServiceDeploymentConfiguration":
        names = {a.name for a in attrs.fields(type(self))}
        unknown = sorted(set(settings) - names)
        if unknown:
            raise InvalidConfig(f"Unknown IoT Edge service settings: {', '.join(unknown)}.")
        return attrs.evolve(self, **settings)
