"""``AciWebservice.deploy_configuration(...)``: azureml-core's parameters, defaults (cpu 0.1,
memory 0.5 GB, auth, SSL and App Insights off) and every rule checked before any remote call,
each error naming the parameter and the rule."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import attrs

from aml_core.errors import InvalidConfig

KIND = "aci"
#: ACI's per-group limits for a standard Linux container group
MAX_CPU_CORES = 4.0
MAX_MEMORY_GB = 16.0
DNS_LABEL_RULE = ("a DNS name label is 5-63 characters of lowercase letters, digits and hyphens, starting "
                  "with a letter and ending with a letter or digit")
_DNS_LABEL = re.compile(r"^[a-z][a-z0-9-]{3,61}[a-z0-9]$")
#: settings ``update()`` accepts besides image/models/inference_config (azureml-core's AciWebservice.update)
UPDATABLE = ("tags", "properties", "description", "auth_enabled", "ssl_enabled", "ssl_cert_pem_file",
             "ssl_key_pem_file", "ssl_cname", "enable_app_insights")


def _positive_within(name: str, value: Any, limit: float, unit: str) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise InvalidConfig(f"Invalid configuration, {name} must be greater than zero (got {value!r}).")
    if value > limit:
        raise InvalidConfig(f"Invalid configuration, {name} must be at most {limit:g} {unit}, ACI's limit for "
                            f"one container group (got {value!r}).")


def _string_dict(name: str, value: Any) -> None:
    if value is not None and (not isinstance(value, dict)
                              or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())):
        raise InvalidConfig(f"Invalid configuration, {name} must be a dict of strings to strings (got {value!r}).")


@attrs.frozen(kw_only=True)
class AciServiceDeploymentConfiguration:
    """What ``AciWebservice.deploy_configuration`` returns; ``None`` means the default (see
    the ``effective_*`` properties). Validated at construction and by ``evolve_settings``."""

    kind = KIND

    cpu_cores: float | None = None
    memory_gb: float | None = None
    tags: dict[str, str] | None = None
    properties: dict[str, str] | None = None
    description: str | None = None
    location: str | None = None
    auth_enabled: bool | None = None
    ssl_enabled: bool | None = None
    enable_app_insights: bool | None = None
    ssl_cert_pem_file: str | None = None
    ssl_key_pem_file: str | None = None
    ssl_cname: str | None = None
    dns_name_label: str | None = None
    primary_key: str | None = attrs.field(default=None, repr=False)
    secondary_key: str | None = attrs.field(default=None, repr=False)
    collect_model_data: bool | None = None
    cmk_vault_base_url: str | None = None
    cmk_key_name: str | None = None
    cmk_key_version: str | None = None
    vnet_name: str | None = None
    subnet_name: str | None = None

    def __attrs_post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        _positive_within("cpu_cores", self.cpu_cores, MAX_CPU_CORES, "cores")
        _positive_within("memory_gb", self.memory_gb, MAX_MEMORY_GB, "GB")
        _string_dict("tags", self.tags)
        _string_dict("properties", self.properties)
        for name in ("auth_enabled", "ssl_enabled", "enable_app_insights", "collect_model_data"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, bool):
                raise InvalidConfig(f"Invalid configuration, {name} must be True or False (got {value!r}).")
        if self.dns_name_label is not None and (not isinstance(self.dns_name_label, str)
                                                or not _DNS_LABEL.match(self.dns_name_label)):
            raise InvalidConfig(f"Invalid configuration, dns_name_label {self.dns_name_label!r}: {DNS_LABEL_RULE}.")
        ssl_files = [n for n in ("ssl_cert_pem_file", "ssl_key_pem_file") if getattr(self, n)]
        if self.ssl_enabled:
            if len(ssl_files) != 2:
                raise InvalidConfig("Invalid configuration, ssl_enabled=True needs ssl_cert_pem_file and "
                                    "ssl_key_pem_file (the certificate and its private key, PEM) to serve HTTPS "
                                    "with; ssl_cname is the name the certificate is for.")
            for name in ssl_files:
                if not Path(getattr(self, name)).expanduser().is_file():
                    raise InvalidConfig(f"Invalid configuration, {name} {getattr(self, name)!r} is not a file.")
        elif ssl_files or self.ssl_cname:
            given = ssl_files + (["ssl_cname"] if self.ssl_cname else [])
            raise InvalidConfig(f"Invalid configuration, {', '.join(given)} given without ssl_enabled=True.")
        keys = [n for n in ("primary_key", "secondary_key") if getattr(self, n) is not None]
        if keys and not self.auth_enabled:
            raise InvalidConfig(f"Invalid configuration, {' and '.join(keys)} can only be set with "
                                f"auth_enabled=True.")
        for name in keys:
            value = getattr(self, name)
            if not isinstance(value, str) or not value or any(c in value for c in " ,\r\n"):
                raise InvalidConfig(f"Invalid configuration, {name} must be a non-empty string without spaces "
                                    f"or commas.")
        cmk = [n for n in ("cmk_vault_base_url", "cmk_key_name", "cmk_key_version") if getattr(self, n)]
        if cmk and len(cmk) != 3:
            raise InvalidConfig("Invalid configuration, cmk_vault_base_url, cmk_key_name and cmk_key_version "
                                "must be given together (customer-managed key encryption).")
        if bool(self.vnet_name) != bool(self.subnet_name):
            raise InvalidConfig("Invalid configuration, vnet_name and subnet_name must be given together.")

    # -- effective defaults (azureml-core's AciWebservice) --------------------------------------
    effective_cpu_cores = property(lambda self: self.cpu_cores if self.cpu_cores is not None else 0.1)
    effective_memory_gb = property(lambda self: self.memory_gb if self.memory_gb is not None else 0.5)
    effective_auth_enabled = property(lambda self: bool(self.auth_enabled))
    effective_ssl_enabled = property(lambda self: bool(self.ssl_enabled))

    # -- persistence ---------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "AciServiceDeploymentConfiguration":
        names = {a.name for a in attrs.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def evolve_settings(self, **settings: Any) -> "AciServiceDeploymentConfiguration":
        """This configuration with ``update()``'s settings applied (``tags`` replace the old
        ones, ``properties`` are added to them, as azureml-core does)."""
        unknown = sorted(set(settings) - set(UPDATABLE))
        if unknown:
            raise InvalidConfig(f"update() of an ACI service does not take {', '.join(unknown)}; it takes image, "
                                f"models, inference_config, {', '.join(UPDATABLE)}.")
        changes = dict(settings)
        if changes.get("properties") is not None:
            changes["properties"] = {**(self.properties or {}), **changes["properties"]}
        if changes.get("ssl_enabled") is False:
            for name in ("ssl_cert_pem_file", "ssl_key_pem_file", "ssl_cname"):
                changes.setdefault(name, None)
        if changes.get("auth_enabled") is False:
            changes.setdefault("primary_key", None)
            changes.setdefault("secondary_key", None)
        return attrs.evolve(self, **changes)
