"""ARM management clients built from the cloud profile.

Every endpoint and credential comes from :class:`aml_core.profiles.CloudProfile`: with
``arm_token`` set (the emulator, or a token a CI job obtained) the client gets a
:class:`aml_core.credentials.StaticTokenCredential`; without one, azure-identity's
``DefaultAzureCredential`` (install ``aml-azure-common[identity]``). ``ca_bundle`` becomes
``connection_verify``. ``profile.extra["arm_polling_interval"]`` (seconds, default 1) is the
poll interval used when the service sends no ``Retry-After``.
"""

from __future__ import annotations

from typing import Any, TypeVar

from aml_core.errors import InvalidConfig
from aml_core.profiles import CloudProfile

ClientT = TypeVar("ClientT")

#: ``extra`` key of the profile holding the default poll interval in seconds
POLLING_INTERVAL_KEY = "arm_polling_interval"


def credential_for(profile: CloudProfile) -> Any:
    """The azure-core ``TokenCredential`` for ``profile``."""
    if profile.arm_token:
        from aml_core.credentials import StaticTokenCredential

        return StaticTokenCredential(profile.arm_token)
    try:
        from azure.identity import DefaultAzureCredential
    except ImportError:
        raise InvalidConfig(
            f"Cloud profile {profile.name!r} has no arm_token, so a token must come from "
            f"azure-identity, which is not installed: pip install 'aml-azure-common[identity]' "
            f"(or put a token in the profile)."
        ) from None
    return DefaultAzureCredential()


def management_client(client_class: type[ClientT], profile: CloudProfile | None = None,
                      **options: Any) -> ClientT:
    """An ``azure-mgmt-*`` client (``client_class(credential, subscription_id, ...)``) for
    ``profile`` (default: :meth:`CloudProfile.load`, i.e. ``$AML_PROFILE`` or ``emulator``).

    :param options: passed on to the client (e.g. ``retry_total=0``), overriding ours.
    """
    if profile is None:
        profile = CloudProfile.load()
    settings: dict[str, Any] = {
        "base_url": profile.arm_endpoint,
        "credential_scopes": profile.credential_scopes,
        "connection_verify": profile.connection_verify,
        "polling_interval": float(profile.extra.get(POLLING_INTERVAL_KEY, 1)),
    }
    settings.update(options)
    return client_class(credential_for(profile), profile.subscription_id, **settings)
