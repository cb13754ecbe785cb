"""``AppServiceWebservice.deploy_configuration(...)``: the App Service plan to host the web app
(created if missing, as a Linux plan of ``sku``), the web app's settings, and key auth; every
rule checked before any remote call, each error naming the parameter and the rule."""

from __future__ import annotations

import re
from typing import Any

import attrs

from aml_core.errors import InvalidConfig

KIND = "appservice"
#: pricing tiers a Linux App Service plan can have; slots (the zero-downtime update) need
#: Standard or above, the tiers in :data:`SLOT_TIERS`
LINUX_SKUS = ("F1", "B1", "B2", "B3", "S1", "S2", "S3", "P1v2", "P2v2", "P3v2", "P0v3", "P1v3", "P2v3", "P3v3")
SLOT_TIERS = ("S", "P")
DEFAULT_SKU = "S1"
DEFAULT_PLAN = "aml-appservice-plan"
PLAN_NAME_RULE = "1 to 60 letters, digits, '-' or '_', starting with a letter or digit"
APP_NAME_RULE = "2 to 60 letters, digits or '-', not starting or ending with '-' (it becomes <name>.azurewebsites.net)"
_PLAN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,59}$")
_APP_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]{0,58}[A-Za-z0-9]$")
#: settings ``update()`` accepts besides models/inference_config/image
UPDATABLE = ("tags", "properties", "description", "auth_enabled", "primary_key", "secondary_key",
             "enable_app_insights")


def _string_dict(name: str, value: Any) -> None:
    if value is not None and (not isinstance(value, dict)
                              or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())):
        raise InvalidConfig(f"Invalid configuration, {name} must be a dict of strings to strings (got {value!r}).")


@attrs.frozen(kw_only=True)
class AppServiceDeploymentConfiguration:
    """What ``AppServiceWebservice.deploy_configuration`` returns; ``None`` means the default
    (see the ``effective_*`` properties). Validated at construction and by ``evolve_settings``."""

    kind = KIND

    #: the App Service plan hosting the web app; reused when it exists (it must be Linux)
    plan_name: str | None = None
    #: the plan's pricing tier when the plan is created (default S1: slots need Standard+)
    sku: str | None = None
    #: the web app's name (default: the service's name); unique across App Service
    app_name: str | None = None
    location: str | None = None
    auth_enabled: bool | None = None
    primary_key: str | None = attrs.field(default=None, repr=False)
    secondary_key: str | None = attrs.field(default=None, repr=False)
    enable_app_insights: bool | None = None
    tags: dict[str, str] | None = None
    properties: dict[str, str] | None = None
    description: str | None = None

    def __attrs_post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        if self.plan_name is not None and (not isinstance(self.plan_name, str) or not _PLAN_NAME.match(self.plan_name)):
            raise InvalidConfig(f"Invalid configuration, plan_name {self.plan_name!r}: {PLAN_NAME_RULE}.")
        if self.sku is not None and (not isinstance(self.sku, str)
                                     or self.sku.lower() not in {s.lower() for s in LINUX_SKUS}):
            raise InvalidConfig(f"Invalid configuration, sku {self.sku!r} is not a pricing tier of a Linux App "
                                f"Service plan; use one of {', '.join(LINUX_SKUS)} (S1 or above for updates "
                                f"without downtime).")
        if self.app_name is not None and (not isinstance(self.app_name, str) or not _APP_NAME.match(self.app_name)):
            raise InvalidConfig(f"Invalid configuration, app_name {self.app_name!r}: {APP_NAME_RULE}.")
        if self.location is not None and (not isinstance(self.location, str) or not self.location.strip()):
            raise InvalidConfig(f"Invalid configuration, location must be an Azure region name (got {self.location!r}).")
        _string_dict("tags", self.tags)
        _string_dict("properties", self.properties)
        for name in ("auth_enabled", "enable_app_insights"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, bool):
                raise InvalidConfig(f"Invalid configuration, {name} must be True or False (got {value!r}).")
        keys = [n for n in ("primary_key", "secondary_key") if getattr(self, n) is not None]
        if keys and not self.auth_enabled:
            raise InvalidConfig(f"Invalid configuration, {' and '.join(keys)} can only be set with auth_enabled=True.")
        for name in keys:
            value = getattr(self, name)
            if not isinstance(value, str) or not value or any(c in value for c in " ,\r\n"):
                raise InvalidConfig(f"Invalid configuration, {name} must be a non-empty string without spaces "
                                    f"or commas.")

    # -- effective defaults ----------------------------------------------------------------------
    effective_plan_name = property(lambda self: self.plan_name or DEFAULT_PLAN)
    effective_sku = property(lambda self: next(s for s in LINUX_SKUS if s.lower() == (self.sku or DEFAULT_SKU).lower()))
    effective_auth_enabled = property(lambda self: bool(self.auth_enabled))

    def app_name_for(self, service_name: str) -> str:
        return self.app_name or service_name

    # -- persistence ---------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "AppServiceDeploymentConfiguration":
        names = {a.name for a in attrs.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def evolve_settings(self, **settings: Any) -> "AppServiceDeploymentConfiguration":
        """This configuration with ``update()``'s settings applied (``tags`` replace the old
        ones, ``properties`` are added to them, as azureml-core does)."""
        unknown = sorted(set(settings) - set(UPDATABLE))
        if unknown:
            raise InvalidConfig(f"update() of an App Service web app does not take {', '.join(unknown)}; it takes "
                                f"image, models, inference_config, {', '.join(UPDATABLE)}.")
        changes = dict(settings)
        if changes.get("properties") is not None:
            changes["properties"] = {**(self.properties or {}), **changes["properties"]}
        if changes.get("auth_enabled") is False:
            changes.setdefault("primary_key", None)
            changes.setdefault("secondary_key", None)
        return attrs.evolve(self, **changes)
