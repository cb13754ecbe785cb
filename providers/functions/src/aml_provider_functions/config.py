"""``FunctionsWebservice.deploy_configuration(...)``: the trigger the function app is packaged
with (when the deployment packages it), the App Service plan hosting it, and the connection
strings of its storage and Service Bus namespace; every rule checked before any remote call."""

from __future__ import annotations

import re
from typing import Any

import attrs

from aml_core.errors import InvalidConfig
from aml_provider_functions.packaging import HTTP_TRIGGER, TRIGGER_OPTIONS, trigger_options

KIND = "functions"
LINUX_SKUS = ("B1", "B2", "B3", "S1", "S2", "S3", "P1v2", "P2v2", "P3v2", "P0v3", "P1v3", "P2v3", "P3v3",
              "EP1", "EP2", "EP3")
#: Standard: its slots let an update start the new version before the old one stops
DEFAULT_SKU = "S1"
DEFAULT_PLAN = "aml-functions-plan"
SECRET_FIELDS = ("storage_connection_string", "trigger_connection_string", "service_bus_connection_string")
_PLAN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,59}$")
_APP_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]{0,58}[A-Za-z0-9]$")


@attrs.frozen(kw_only=True)
class FunctionsDeploymentConfiguration:
    """What ``FunctionsWebservice.deploy_configuration`` returns."""

    kind = KIND

    #: the trigger a deployment from models packages (``deploy_from_image`` keeps the image's)
    trigger: str = HTTP_TRIGGER
    #: the trigger's options: auth_level, input_path/output_path, input/output_queue_name
    trigger_options: dict[str, Any] = attrs.field(factory=dict)
    plan_name: str | None = None
    sku: str | None = None
    app_name: str | None = None
    location: str | None = None
    #: ``AzureWebJobsStorage``: the host's own storage (blob receipts, poison queue)
    storage_connection_string: str | None = attrs.field(default=None, repr=False)
    #: the blob trigger's storage (``TriggerConnectionString``); default: the host's storage
    trigger_connection_string: str | None = attrs.field(default=None, repr=False)
    #: the Service Bus namespace of the queue trigger (``ServiceBusConnection``)
    service_bus_connection_string: str | None = attrs.field(default=None, repr=False)
    tags: dict[str, str] | None = None

    def __attrs_post_init__(self) -> None:
        object.__setattr__(self, "trigger_options", trigger_options(self.trigger, dict(self.trigger_options)))
        if self.plan_name is not None and not _PLAN_NAME.match(str(self.plan_name)):
            raise InvalidConfig(f"Invalid plan_name {self.plan_name!r}: 1 to 60 letters, digits, '-' or '_'.")
        if self.sku is not None and self.sku not in LINUX_SKUS:
            raise InvalidConfig(f"Invalid sku {self.sku!r}: a Linux plan for function apps is one of {LINUX_SKUS}.")
        if self.app_name is not None and not _APP_NAME.match(str(self.app_name)):
            raise InvalidConfig(f"Invalid app_name {self.app_name!r}: 2 to 60 letters, digits or '-', not starting "
                                f"or ending with '-'.")

    def to_dict(self) -> dict[str, Any]:
        """Kept with the service in the workspace: without the connection strings (secrets),
        which an update reads back from the function app's settings."""
        return {k: v for k, v in attrs.asdict(self).items() if k not in SECRET_FIELDS}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "FunctionsDeploymentConfiguration":
        names = {a.name for a in attrs.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    @property
    def effective_plan_name(self) -> str:
        return self.plan_name or DEFAULT_PLAN

    @property
    def effective_sku(self) -> str:
        return self.sku or DEFAULT_SKU

    def app_name_for(self, service: str) -> str:
        return self.app_name or service


def deploy_configuration(trigger: str = HTTP_TRIGGER, plan_name: str | None = None, sku: str | None = None,
                         app_name: str | None = None, location: str | None = None,
                         storage_connection_string: str | None = None, trigger_connection_string: str | None = None,
                         service_bus_connection_string: str | None = None, tags: dict[str, str] | None = None,
                         **options: Any) -> FunctionsDeploymentConfiguration:
    known = {name for names in TRIGGER_OPTIONS.values() for name in names}
    unknown = sorted(set(options) - known)
    if unknown:
        raise InvalidConfig(f"Invalid option {unknown[0]}, valid options are {sorted(known)}")
    return FunctionsDeploymentConfiguration(
        trigger=trigger, trigger_options={k: v for k, v in options.items() if v is not None}, plan_name=plan_name,
        sku=sku, app_name=app_name, location=location, storage_connection_string=storage_connection_string,
        trigger_connection_string=trigger_connection_string,
        service_bus_connection_string=service_bus_connection_string, tags=tags)
