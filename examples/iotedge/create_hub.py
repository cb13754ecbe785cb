"""Create (or find) an IoT hub through Azure Resource Manager and print its owner connection string.

Only the cloud profile differs between the emulator and Azure. Against the emulator, the hub's
HostName is a loopback address of its own; its endpoints trust the emulator's CA.

    python create_hub.py NAME [--profile NAME]
"""

from __future__ import annotations

import argparse

from azure.mgmt.iothub import IotHubClient
from azure.mgmt.iothub.models import IotHubDescription, IotHubSkuInfo

from aml_core.credentials import StaticTokenCredential
from aml_core.profiles import CloudProfile


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name")
    parser.add_argument("--profile", default=None)
    args = parser.parse_args()
    profile = CloudProfile.load(args.profile)
    if profile.arm_token:
        credential = StaticTokenCredential(profile.arm_token)
    else:  # real Azure: sign-in from the environment
        from azure.identity import DefaultAzureCredential

        credential = DefaultAzureCredential()
    client = IotHubClient(credential, profile.subscription_id, base_url=profile.arm_endpoint,
                          credential_scopes=["https://management.azure.com/.default"],
                          connection_verify=profile.ca_bundle or True)
    hub = client.iot_hub_resource.begin_create_or_update(
        profile.resource_group, args.name, IotHubDescription(location="westus", sku=IotHubSkuInfo(name="S1", capacity=1))
    ).result()
    key = client.iot_hub_resource.get_keys_for_key_name(profile.resource_group, args.name, "iothubowner")
    print(f"HostName={hub.properties.host_name};SharedAccessKeyName=iothubowner;SharedAccessKey={key.primary_key}")


if __name__ == "__main__":
    main()
