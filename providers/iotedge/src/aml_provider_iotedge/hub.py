"""Reaching the IoT hub: its owner connection string, and the azure-iot-hub clients.

The hub is found, in this order, from ``AML_IOTHUB_CONNECTION_STRING``, or through Azure
Resource Manager (azure-mgmt-iothub, with the cloud profile's endpoint and credentials): the
hub named by ``compute_target_name`` or the profile's ``extra["iothub_name"]``, in the
profile's resource group, whose ``iothubowner`` key is read with ``get_keys_for_key_name``.
The profile's CA bundle is what the service clients trust, so the emulator and Azure differ
only by profile.
"""

from __future__ import annotations

import os
from typing import Any

from aml_core.errors import InvalidConfig, NotFound
from aml_core.profiles import CloudProfile

ENV_CONNECTION_STRING = "AML_IOTHUB_CONNECTION_STRING"
OWNER_POLICY = "iothubowner"


def connection_string(config: Any) -> str:
    configured = os.environ.get(ENV_CONNECTION_STRING)
    if configured:
        return configured
    from azure.mgmt.iothub import IotHubClient

    from aml_azure_common import arm_errors, management_client

    profile = CloudProfile.load()
    name = config.compute_target_name or profile.extra.get("iothub_name")
    if not name:
        raise InvalidConfig(
            "No IoT hub to deploy through: set compute_target_name in IotWebservice.deploy_configuration(...) to "
            f"the hub's name, set extra.iothub_name in cloud profile {profile.name!r}, or set {ENV_CONNECTION_STRING}.")
    client = management_client(IotHubClient, profile)
    with arm_errors(f"Reading IoT hub {name!r} in resource group {profile.resource_group!r}",
                    fix="Create the hub first (azure-mgmt-iothub iot_hub_resource.begin_create_or_update)."):
        hub = client.iot_hub_resource.get(profile.resource_group, name)
        key = client.iot_hub_resource.get_keys_for_key_name(profile.resource_group, name, OWNER_POLICY)
    return f"HostName={hub.properties.host_name};SharedAccessKeyName={OWNER_POLICY};SharedAccessKey={key.primary_key}"


def _trust(client: Any) -> Any:
    try:
        bundle = CloudProfile.load().ca_bundle
    except NotFound:  # no profile: Azure's public CAs, as requests has them
        bundle = None
    if bundle:
        client.protocol.config.connection.verify = bundle
    return client


def registry_manager(config: Any) -> Any:
    from azure.iot.hub import IoTHubRegistryManager

    return _trust(IoTHubRegistryManager.from_connection_string(connection_string(config)))


def configuration_manager(config: Any) -> Any:
    from azure.iot.hub import IoTHubConfigurationManager

    return _trust(IoTHubConfigurationManager.from_connection_string(connection_string(config)))


def hostname(config: Any) -> str:
    fields = dict(part.split("=", 1) for part in connection_string(config).split(";") if "=" in part)
    return fields.get("HostName", "")
