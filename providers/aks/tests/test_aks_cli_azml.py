"""The AKS guide's CLI flow (shared/seeds/002, "Använda CLI") with `az ml` replaced by `aml`:
create and attach a cluster, deploy from inferenceconfig.json and deploymentconfig.json,
then the service's keys and logs, against the emulator."""

from __future__ import annotations

import json
import textwrap

import pytest
from click.testing import CliRunner

from aml_core.cli import cli

SCORE = textwrap.dedent('''
    import json

    def init():
        pass

    def run(raw_data):
        return {"rows": len(json.loads(raw_data)["data"])}
''')

#: the guide's include machine-learning-service-aks-deploy-config.md, as written
DEPLOYMENT_CONFIG = """{
    "computeType": "aks",
    "autoScaler":
    {
        "autoscaleEnabled": true,
        "minReplicas": 1,
        "maxReplicas": 3,
        "refreshPeriodInSeconds": 1,
        "targetUtilization": 70
    },
    "dataCollection":
    {
        "storageEnabled": true
    },
    "authEnabled": true,
    "containerResourceRequirements":
    {
        "cpu": 0.5,
        "memoryInGB": 1.0
    }
}
"""


@pytest.fixture
def project(emulator, tmp_path, monkeypatch):
    """myworkspace in myresourcegroup (found by name, as `-w myworkspace` needs), and the
    user's project folder as the current directory."""
    from aml_core.workspace import Workspace

    monkeypatch.setenv("AML_WORKSPACES_HOME", str(tmp_path / "workspaces"))
    ws = Workspace.create(tmp_path / "workspaces" / "myworkspace", "myworkspace", resource_group="myresourcegroup",
                          container_registry="profile:emulator")
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "score.py").write_text(SCORE)
    (folder / "model.pkl").write_bytes(b"weights")
    monkeypatch.chdir(folder)
    monkeypatch.setenv("AML_WORKSPACE", str(ws.root))
    return ws


def aml(*args: str) -> object:
    result = CliRunner().invoke(cli, [*args, "-o", "json"], catch_exceptions=False)
    assert result.exit_code == 0, (args, result.stdout, result.stderr)
    return json.loads(result.stdout)


def test_create_deploy_keys_and_logs_as_the_guide_writes_them(project):
    created = aml(*"computetarget create aks -n myaks".split())
    assert (created["computeType"], created["provisioningState"]) == ("aks", "Succeeded")
    aml(*"model register -n mymodel -p model.pkl".split())
    with open("inferenceconfig.json", "w") as f:
        json.dump({"entryScript": "score.py", "sourceDirectory": ".", "environment": {"name": "AzureML-Minimal", "version": "1"}}, f)
    with open("deploymentconfig.json", "w") as f:
        f.write(DEPLOYMENT_CONFIG)

    service = aml(*"model deploy -ct myaks -m mymodel:1 -n myservice -ic inferenceconfig.json "
                   "-dc deploymentconfig.json".split())
    assert service["state"] == "Healthy"

    from aml_core.webservice import Webservice

    handle = Webservice(project, "myservice")
    from aml_core.webservice import _load_row

    stored = _load_row(project, "myservice")[1]["deployment_config"]  # what the file asked for
    assert (stored["cpu_cores"], stored["memory_gb"], stored["autoscale_max_replicas"],
            stored["collect_model_data"], stored["auth_enabled"]) == (0.5, 1.0, 3, True, True)
    assert handle.run('{"data": [[1], [2]]}') == {"rows": 2}
    keys = aml(*"service get-keys -n myservice".split())
    regenerated = aml(*"service regen-key -n myservice -k Primary".split())
    assert regenerated["primaryKey"] != keys["primaryKey"]
    assert regenerated["secondaryKey"] == keys["secondaryKey"]
    logs = aml(*"service get-logs -n myservice".split())
    assert logs["name"] == "myservice"
    assert handle.record.auth_mode == "key"
    handle.delete()

    # --ct alone: the compute's kind with its defaults (no deploymentconfig.json)
    defaults = aml(*"model deploy --ct myaks -m mymodel -n otherservice --es score.py -e AzureML-Minimal".split())
    assert (defaults["kind"], defaults["state"]) == ("aks", "Healthy")
    Webservice(project, "otherservice").delete()
    deleted = aml(*"computetarget delete -n myaks".split())
    assert deleted == {"name": "myaks", "deleted": True}
    assert aml("computetarget", "list") == []


def test_attach_by_resource_id_with_the_workspaces_group_and_name(project):
    from azure.mgmt.containerservice import ContainerServiceClient
    from azure.mgmt.resource.resources import ResourceManagementClient

    from aml_core.credentials import StaticTokenCredential
    from aml_core.profiles import CloudProfile

    profile = CloudProfile.load("emulator")
    options = dict(base_url=profile.arm_endpoint, credential_scopes=profile.credential_scopes,
                   connection_verify=profile.connection_verify, polling_interval=0.2)
    credential = StaticTokenCredential(profile.arm_token)
    ResourceManagementClient(credential, profile.subscription_id, **options).resource_groups.create_or_update(
        "myresourcegroup", {"location": "westeurope"})
    # `az aks show -n myexistingcluster -g myresourcegroup --query id`
    aksresourceid = ContainerServiceClient(credential, profile.subscription_id, **options).managed_clusters.\
        begin_create_or_update("myresourcegroup", "myexistingcluster",
                               {"location": "westeurope", "properties": {"dnsPrefix": "existing"}}).result().id

    attached = aml(*f"computetarget attach aks -n myaks -i {aksresourceid} -g myresourcegroup -w myworkspace".split())
    assert attached["provisioningState"] == "Succeeded"
    assert attached["details"]["cluster_name"] == "myexistingcluster"
    assert [t["name"] for t in aml("computetarget", "list")] == ["myaks"]
    assert aml(*"computetarget show -n myaks".split())["details"]["resource_group"] == "myresourcegroup"

    wrong_group = CliRunner().invoke(cli, [*"computetarget attach aks -n other -i".split(), aksresourceid,
                                           "-g", "othergroup", "-w", "myworkspace"])
    assert wrong_group.exit_code == 3 and "resource group 'othergroup'" in wrong_group.stderr
    assert aml(*"computetarget detach -n myaks".split()) == {"name": "myaks", "detached": True}
    # detached, not deleted: the cluster is still there in its group
    still = ContainerServiceClient(credential, profile.subscription_id, **options).managed_clusters.get(
        "myresourcegroup", "myexistingcluster")
    assert still.provisioning_state == "Succeeded"
