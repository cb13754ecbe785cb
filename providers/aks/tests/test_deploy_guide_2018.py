"""The 2018 deployment guide (how-to-deploy-and-where, shared/seeds/000 in Swedish and 001 in
Chinese: the same code) run as written against the emulator, imports changed and the
guide's own typos fixed (each marked ``# typo:``).

Its last steps, ``Webservice.deploy_from_image`` and ``service.update(image=...)``, are not
run here: they are being added by the ACI work (see docs/porting.md).
"""

from __future__ import annotations

import textwrap

SCORE = textwrap.dedent('''
    import json

    def init():
        pass

    def run(input_data):
        return {"rows": len(json.loads(input_data)["data"])}
''')

MYENV = textwrap.dedent('''
    name: project_environment
    dependencies:
      - python=3.11
      - pip:
        - azureml-defaults
''')


def test_register_configure_and_create_the_image_then_the_clusters(emulator, ws, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "model.pkl").write_bytes(b"ridge")
    (tmp_path / "score.py").write_text(SCORE)
    (tmp_path / "myenv.yml").write_text(MYENV)

    # -- Registrera en modell (000 writes tags as a list, 001 as a dict; both are accepted)
    from aml_core.model import Model

    model = Model.register(model_path = "model.pkl",
                           model_name = "Mymodel",
                           tags = ["0.1"],
                           description = "test",
                           workspace = ws)
    model = Model.register(model_path = "model.pkl",
                           model_name = "Mymodel",
                           tags = {"key": "0.1"},
                           description = "test",
                           workspace = ws)
    assert (model.version, model.tags) == (2, {"key": "0.1"})

    # -- Skapa en konfiguration för avbildning
    from aml_core.images import ContainerImage

    # Image configuration
    image_config = ContainerImage.image_configuration(execution_script = "score.py",
                                                     runtime = "python",
                                                     conda_file = "myenv.yml",
                                                     description = "Image with ridge regression model",
                                                     tags = {"data": "diabetes", "type": "regression"}
                                                     )

    # -- Skapa avbildningen
    # Create the image from the image configuration
    image = ContainerImage.create(name = "myimage",
                                  models = [model], #this is the model object
                                  image_config = image_config,
                                  workspace = ws
                                  )
    assert image.id == "myimage:1"

    # -- Distribuera till Azure Kubernetes Service, step 1
    from aml_core.compute import ComputeTarget
    from aml_provider_aks import AksCompute

    # Use the default configuration (you can also provide parameters to customize this)
    prov_config = AksCompute.provisioning_configuration()

    aks_name = 'aml-aks-1'
    # Create the cluster
    aks_target = ComputeTarget.create(workspace = ws,
                                        name = aks_name,
                                        provisioning_configuration = prov_config)

    # Wait for the create process to complete
    aks_target.wait_for_completion(show_output = True)
    print(aks_target.provisioning_state)
    print(aks_target.provisioning_errors)
    assert (aks_target.provisioning_state, aks_target.provisioning_errors) == ("Succeeded", [])

    # -- the tip: attach an existing cluster (the user made it in myresourcegroup beforehand)
    _make_existing_cluster("myresourcegroup", "mycluster")
    # Set the resource group that contains the AKS cluster and the cluster name
    resource_group = 'myresourcegroup'
    cluster_name = 'mycluster'

    # Attatch the cluster to your workgroup
    attach_config = AksCompute.attach_configuration(resource_group = resource_group,
                                             cluster_name = cluster_name)
    compute = ComputeTarget.attach(ws, 'mycompute', attach_config)

    # Wait for the operation to complete
    compute.wait_for_completion(True)  # typo: the guide waits on aks_target, not on the compute it attached
    assert compute.provisioning_state == "Succeeded"

    # -- Hämta autentiseringsuppgifter för registret, "Med en Python-skriptet"
    from aml_core.profiles import CloudProfile

    profile = CloudProfile.load("emulator")
    # Getting your container details
    container_reg = ws.get_details()["containerRegistry"]
    reg_name=container_reg.split("/")[-1]
    container_url = "\"" + image.image_location + "\","
    subscription_id = ws.subscription_id
    from azure.mgmt.containerregistry import ContainerRegistryManagementClient
    from azure.mgmt import containerregistry  # noqa: F401  (the guide imports it and never uses it)
    # differs: an ARM client is pointed at the emulator by base_url (and its CA); the profile has both
    client = ContainerRegistryManagementClient(ws._auth,subscription_id, base_url=profile.arm_endpoint,
                                               connection_verify=profile.connection_verify,
                                               credential_scopes=profile.credential_scopes)
    resource_group_name = ws.resource_group  # typo: the guide never sets resource_group_name
    # differs: custom_headers= and raw= were msrest's; today's azure-mgmt clients take neither
    result= client.registries.list_credentials(resource_group_name, reg_name)
    username = result.username
    password = result.passwords[0].value
    print('ContainerURL{}'.format(image.image_location))
    print('Servername: {}'.format(reg_name))
    print('Username: {}'.format(username))
    assert reg_name == profile.registry_name
    assert container_url.startswith(f'"{profile.registry_login_server}/myimage')
    assert username and password

    # -- Testa webbtjänstdistributioner, on a service deployed from the same files. The guide
    # deploys `image` with Webservice.deploy_from_image, which the image-based deployment work
    # adds; Model.deploy stands in for it here.
    from aml_core.model import InferenceConfig
    from aml_provider_aks import AksWebservice

    service = Model.deploy(ws, "aks-service-1", [model], InferenceConfig(entry_script="score.py",
                                                                         conda_file="myenv.yml"),
                           AksWebservice.deploy_configuration(), aks_target)
    service.wait_for_deployment(show_output = True)
    import json

    test_sample = json.dumps({'data': [
        [1,2,3,4,5,6,7,8,9,10],
        [10,9,8,7,6,5,4,3,2,1]
    ]})
    test_sample = bytes(test_sample,encoding = 'utf8')

    prediction = service.run(input_data = test_sample)
    print(prediction)
    assert prediction == {"rows": 2}

    # -- Rensa
    service.delete()
    image.delete()
    model.delete()
    assert [m.id for m in Model.list(ws, name="Mymodel")] == ["Mymodel:1"]


def _make_existing_cluster(group: str, name: str) -> None:
    """What `az group create` and `az aks create` did before the guide starts."""
    from azure.mgmt.containerservice import ContainerServiceClient
    from azure.mgmt.resource.resources import ResourceManagementClient

    from aml_core.credentials import StaticTokenCredential
    from aml_core.profiles import CloudProfile

    profile = CloudProfile.load("emulator")
    options = dict(base_url=profile.arm_endpoint, credential_scopes=profile.credential_scopes,
                   connection_verify=profile.connection_verify, polling_interval=0.2)
    credential = StaticTokenCredential(profile.arm_token)
    ResourceManagementClient(credential, profile.subscription_id, **options).resource_groups.create_or_update(
        group, {"location": "eastus2"})
    ContainerServiceClient(credential, profile.subscription_id, **options).managed_clusters.begin_create_or_update(
        group, name, {"location": "eastus2", "properties": {"dnsPrefix": name}}).result(timeout=60)
