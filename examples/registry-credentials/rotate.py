"""Rotate a container registry's admin password without downtime, through Azure Resource Manager.

The script only reads a cloud profile: against the emulator (`aml emulator start` writes the
"emulator" profile) or against Azure (an "azure" profile, token from azure-identity), the code
is the same. It lists the registry's two admin passwords, logs in with the second, rotates the
first, and shows that the old value stops working at once while the second keeps working.

    python rotate.py [--profile NAME]
"""

from __future__ import annotations

import argparse

import requests
from azure.mgmt.containerregistry import ContainerRegistryManagementClient

from aml_core.credentials import StaticTokenCredential
from aml_core.profiles import CloudProfile


def credential_for(profile: CloudProfile):
    if profile.arm_token:
        return StaticTokenCredential(profile.arm_token)
    from azure.identity import DefaultAzureCredential  # real Azure: sign-in from the environment

    return DefaultAzureCredential()


def registry_status(base_url: str, username: str, password: str) -> int:
    return requests.get(f"{base_url}/v2/", auth=(username, password), timeout=30).status_code


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default=None, help="profile name (default: $AML_PROFILE, else emulator)")
    args = parser.parse_args()

    profile = CloudProfile.load(args.profile)
    client = ContainerRegistryManagementClient(
        credential_for(profile), profile.subscription_id,
        base_url=profile.arm_endpoint, credential_scopes=profile.credential_scopes,
        connection_verify=profile.connection_verify,
    )
    registry = client.registries.get(profile.resource_group, profile.registry_name)
    base_url = profile.extra.get("registry_url", f"https://{registry.login_server}")
    print(f"Registry {registry.name} at {registry.login_server}")

    before = client.registries.list_credentials(profile.resource_group, profile.registry_name)
    old = {p.name: p.value for p in before.passwords}
    print(f"Login with password2: HTTP {registry_status(base_url, before.username, old['password2'])}")

    after = client.registries.regenerate_credential(profile.resource_group, profile.registry_name,
                                                    {"name": "password"})
    new = {p.name: p.value for p in after.passwords}
    print("Rotated password")
    print(f"Old password: HTTP {registry_status(base_url, after.username, old['password'])}")
    print(f"New password: HTTP {registry_status(base_url, after.username, new['password'])}")
    print(f"password2 still: HTTP {registry_status(base_url, after.username, new['password2'])}")


if __name__ == "__main__":
    main()
