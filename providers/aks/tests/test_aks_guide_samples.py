"""The AKS guide (how-to-deploy-azure-kubernetes-service, shared/seeds/002) run as written,
against the emulator, with only its imports changed (azureml.core... -> aml_core /
aml_provider_aks) and its own typos fixed (each marked ``# typo:``).

The guide assumes ``ws``, ``model`` and ``inference_config`` are set; the fixtures set them.
"""

from __future__ import annotations

import pytest


SCORE = """
import json


def init():
    pass


def run(raw_data):
    return {"sum": sum(json.loads(raw_data)["data"][0])}
"""


@pytest.fixture
def guide(emulator, ws, tmp_path, monkeypatch):
    from aml_core.environment import Environment
    from aml_core.model import InferenceConfig, Model

    (tmp_path / "score.py").write_text(SCORE)
    (tmp_path / "model.pkl").write_bytes(b"weights")
    monkeypatch.chdir(tmp_path)
    model = Model.register(model_path="model.pkl", model_name="mymodel", workspace=ws)
    inference_config = InferenceConfig(entry_script="score.py", environment=Environment("myenv"))
    return {"ws": ws, "model": model, "inference_config": inference_config}


def test_create_deploy_and_controlled_rollout_as_the_guide_writes_them(guide):
    ws, model, inference_config = guide["ws"], guide["model"], guide["inference_config"]

    # -- Create a new AKS cluster, "Med SDK"
    from aml_core.compute import ComputeTarget
    from aml_provider_aks import AksCompute

    # Use the default configuration (you can also provide parameters to customize this).
    # For example, to create a dev/test cluster, use:
    # prov_config = AksCompute.provisioning_configuration(cluster_purpose = AksCompute.ClusterPurpose.DEV_TEST)
    prov_config = AksCompute.provisioning_configuration()

    aks_name = 'myaks'
    # Create the cluster
    aks_target = ComputeTarget.create(workspace = ws,
                                        name = aks_name,
                                        provisioning_configuration = prov_config)

    # Wait for the create process to complete
    aks_target.wait_for_completion(show_output = True)

    # -- Deploy to AKS, "Med SDK"
    from aml_provider_aks import AksWebservice
    from aml_core.webservice import Webservice
    from aml_core.model import Model

    aks_target = AksCompute(ws,"myaks")
    # If deploying to a cluster configured for dev/test, ensure that it was created with enough
    # cores and memory to handle this deployment configuration. Note that memory is also used by
    # things such as dependencies and AML components.
    deployment_config = AksWebservice.deploy_configuration(cpu_cores = 1, memory_gb = 1)
    service = Model.deploy(ws, "myservice", [model], inference_config, deployment_config, aks_target)
    service.wait_for_deployment(show_output = True)
    print(service.state)
    print(service.get_logs())
    assert service.state == "Healthy"

    # -- Authentication with keys
    primary, secondary = service.get_keys()
    print(primary)
    assert service.run('{"data": [[1, 2, 3]]}') == {"sum": 6}

    # -- Create an endpoint (controlled rollout)
    from aml_provider_aks import AksEndpoint  # typo: `import azureml.core,` (a stray comma) dropped
    from aml_provider_aks import AksCompute
    from aml_core.compute import ComputeTarget
    # select a created compute
    compute = ComputeTarget(ws, 'myaks')
    namespace_name= "endpointnamespace"  # typo: the guide leaves endpointnamespace undefined
    # define the endpoint and version name
    endpoint_name = "mynewendpoint"  # typo: a trailing comma made this a tuple
    version_name= "versiona"  # typo: a trailing comma made this a tuple
    # create the deployment config and define the scoring traffic percentile for the first deployment
    endpoint_deployment_config = AksEndpoint.deploy_configuration(cpu_cores = 0.1, memory_gb = 0.2,
                                                                  enable_app_insights = True,
                                                                  tags = {'sckitlearn':'demo'},
                                                                  description = "testing versions",
                                                                  version_name = version_name,
                                                                  traffic_percentile = 20)
    # deploy the model and endpoint  (typo: the guide indents these two lines by one space)
    endpoint = Model.deploy(ws, endpoint_name, [model], inference_config, endpoint_deployment_config, compute)
    endpoint.wait_for_deployment(show_output = True)  # the guide leaves out waiting before the next step

    # -- Add a version to the endpoint
    from aml_provider_aks import AksEndpoint

    # add another model deployment to the same endpoint as above
    version_name_add = "versionb"
    endpoint.create_version(version_name = version_name_add,
                            inference_config=inference_config,
                            models=[model],
                            tags = {'modelVersion':'b'},
                            description = "my second version",
                            traffic_percentile = 10)
    versionb = endpoint.versions["versionb"]
    assert (versionb.tags, versionb.description, versionb.traffic_percentile) == (
        {"modelVersion": "b"}, "my second version", 10)

    # -- Update and delete versions
    from aml_provider_aks import AksEndpoint

    # update the version's scoring traffic percentage and if it is a default or control type
    endpoint.update_version(version_name=endpoint.versions["versionb"].name,
                            description="my second version update",
                            traffic_percentile=40,
                            is_default=True,
                            is_control_version_type=True)
    versionb = endpoint.versions["versionb"]
    assert (versionb.description, versionb.traffic_percentile, versionb.is_default, versionb.version_type) == (
        "my second version update", 40, True, "Control")
    assert endpoint.versions["versiona"].is_default is False

    # the guide deletes versionb while it is the default; Azure ML refuses that as we do
    from aml_core.errors import InvalidConfig

    with pytest.raises(InvalidConfig, match="is the default"):
        endpoint.delete_version(version_name="versionb")
    endpoint.update_version(version_name="versiona", is_default=True)
    # delete a version in an endpoint
    endpoint.delete_version(version_name="versionb")
    assert list(endpoint.versions) == ["versiona"]
    endpoint.delete()
    service.delete()


def test_attach_an_existing_cluster_in_its_own_resource_group(guide, emulator):
    """"Koppla ett befintligt AKS-kluster": the user's cluster lives in myresourcegroup."""
    from azure.mgmt.containerservice import ContainerServiceClient
    from azure.mgmt.resource.resources import ResourceManagementClient

    from aml_core.credentials import StaticTokenCredential
    from aml_core.profiles import CloudProfile

    profile = CloudProfile.load("emulator")
    options = dict(base_url=profile.arm_endpoint, credential_scopes=profile.credential_scopes,
                   connection_verify=profile.connection_verify, polling_interval=0.2)
    credential = StaticTokenCredential(profile.arm_token)
    # what `az group create` and `az aks create` did before the guide starts
    ResourceManagementClient(credential, profile.subscription_id, **options).resource_groups.create_or_update(
        "myresourcegroup", {"location": "westeurope"})
    ContainerServiceClient(credential, profile.subscription_id, **options).managed_clusters.begin_create_or_update(
        "myresourcegroup", "myexistingcluster", {"location": "westeurope", "properties": {"dnsPrefix": "existing"}},
    ).result(timeout=60)

    ws = guide["ws"]
    from aml_provider_aks import AksCompute
    from aml_core.compute import ComputeTarget
    # Set the resource group that contains the AKS cluster and the cluster name
    resource_group = 'myresourcegroup'
    cluster_name = 'myexistingcluster'

    # Attach the cluster to your workgroup. If the cluster has less than 12 virtual CPUs, use the following instead:
    # attach_config = AksCompute.attach_configuration(resource_group = resource_group,
    #                                         cluster_name = cluster_name,
    #                                         cluster_purpose = AksCompute.ClusterPurpose.DEV_TEST)
    attach_config = AksCompute.attach_configuration(resource_group = resource_group,
                                             cluster_name = cluster_name)
    aks_target = ComputeTarget.attach(ws, 'myaks', attach_config)
    aks_target.wait_for_completion(show_output=True)  # the guide leaves out waiting
    assert aks_target.provisioning_state == "Succeeded"
    assert aks_target.record.details["resource_group"] == "myresourcegroup"
