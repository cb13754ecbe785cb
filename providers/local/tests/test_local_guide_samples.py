"""The local deployment guide (how-to-deploy-local, shared/seeds/004) run as written on the
local target: imports changed, the guide's own typos fixed (each marked ``# typo:``).

The guide's user has done the training tutorial: ``sklearn_mnist`` is registered and so is
the environment ``tutorial-env``; the fixture does both (on small synthetic data), and
writes the guide's ``score.py``. The service listens on the guide's port, 6789.
"""

from __future__ import annotations

import textwrap

import pytest

#: the guide's entry script, as written
SCORE = textwrap.dedent('''
    import json
    import numpy as np
    import os
    import pickle
    import joblib

    def init():
        global model
        # AZUREML_MODEL_DIR is an environment variable created during deployment.
        # It's the path to the model folder (./azureml-models/$MODEL_NAME/$VERSION).
        # For multiple models, it points to the folder containing all deployed models (./azureml-models).
        model_path = os.path.join(os.getenv('AZUREML_MODEL_DIR'), 'sklearn_mnist_model.pkl')
        model = joblib.load(model_path)

    def run(raw_data):
        data = np.array(json.loads(raw_data)['data'])
        # Make prediction.
        y_hat = model.predict(data)
        # You can return any data type as long as it's JSON-serializable.
        return y_hat.tolist()
''')


@pytest.fixture
def tutorial_done(tmp_path, monkeypatch):
    """The state the guide starts from: a workspace found by from_config, the tutorial's model
    and environment registered, score.py in the current directory."""
    import joblib
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    from aml_core.conda_dependencies import CondaDependencies
    from aml_core.environment import Environment
    from aml_core.model import Model
    from aml_core.workspace import Workspace

    project = tmp_path / "project"
    project.mkdir()
    monkeypatch.chdir(project)
    monkeypatch.delenv("AML_WORKSPACE", raising=False)
    ws = Workspace.create(tmp_path / "ws", "tutorial-ws")
    ws.write_config()
    rng = np.random.default_rng(0)
    pixels, digits = rng.random((60, 784)), np.arange(60) % 10
    joblib.dump(LogisticRegression(max_iter=200).fit(pixels, digits), tmp_path / "sklearn_mnist_model.pkl")
    Model.register(ws, str(tmp_path / "sklearn_mnist_model.pkl"), "sklearn_mnist")
    env = Environment("tutorial-env")
    env.python.conda_dependencies = CondaDependencies.create(conda_packages=["numpy", "scikit-learn"],
                                                             pip_packages=["azureml-defaults", "joblib"])
    env.register(ws)
    (project / "score.py").write_text(SCORE)
    return ws


def test_deploy_as_a_local_web_service_and_score_it(tutorial_done):
    from aml_core.webservice import Webservice
    from aml_core.model import InferenceConfig  # typo: the guide imports it from azure.core.model
    from aml_core.environment import Environment
    from aml_core import Workspace
    from aml_core.model import Model
    from aml_provider_local import LocalWebservice  # typo: the guide uses LocalWebservice without importing it

    ws = Workspace.from_config()
    model = Model(ws, 'sklearn_mnist')


    myenv = Environment.get(workspace=ws, name="tutorial-env", version="1")
    inference_config = InferenceConfig(entry_script="score.py", environment=myenv)

    deployment_config = LocalWebservice.deploy_configuration(port=6789)

    local_service = Model.deploy(workspace=ws,
                           name='sklearn-mnist-local',
                           models=[model],
                           inference_config=inference_config,
                           deployment_config = deployment_config)

    local_service.wait_for_deployment(show_output=True)
    print(f"Scoring URI is : {local_service.scoring_uri}")
    try:
        # -- Testa din lokala distribution
        import requests

        normalized_pixel_values = "[" + ", ".join(["0.0"] * 100 + ["1.0"] * 84 + ["0.0"] * 600) + "]"

        input_data = "{\"data\": [" + normalized_pixel_values + "]}"

        headers = {'Content-Type': 'application/json'}

        scoring_uri = "http://localhost:6789/score"
        resp = requests.post(scoring_uri, input_data, headers=headers)

        print("Should be predicted as '2'")
        print("prediction:", resp.text)
        assert resp.status_code == 200
        prediction = resp.json()
        assert len(prediction) == 1 and prediction[0] in range(10)
        assert Webservice(ws, "sklearn-mnist-local").scoring_uri.endswith(":6789/score")

        # the reference's metadata calls (b4): stored, seen by any other handle, no rollout
        local_service.add_tags({"stage": "dev", "owner": "me"})
        local_service.remove_tags(["owner"])
        local_service.add_properties({"dataset": "mnist"})
        found = Webservice(ws, "sklearn-mnist-local")
        assert (found.tags, found.properties) == ({"stage": "dev"}, {"dataset": "mnist"})
        again = Webservice.deserialize(ws, found.serialize())
        assert (type(again), again.name, again.scoring_uri) == (type(found), found.name, found.scoring_uri)
        assert requests.post(scoring_uri, input_data, headers=headers).status_code == 200

        # deploy_to_cloud: the same models and code on another target (here another local one)
        copy = local_service.deploy_to_cloud(name="sklearn-mnist-copy",
                                             deployment_config=LocalWebservice.deploy_configuration())
        try:
            copy.wait_for_deployment()
            assert copy.models == local_service.models
            assert requests.post(copy.scoring_uri, input_data, headers=headers).json() == resp.json()
        finally:
            copy.delete()
    finally:
        local_service.delete()


def test_build_the_environment_locally_and_register_a_retrained_model(tutorial_done):
    from aml_core import Workspace
    from aml_core.environment import Environment

    ws = Workspace.from_config()
    myenv = Environment.get(workspace=ws, name="tutorial-env", version="1")
    python = myenv.build_local(workspace=ws, useDocker=False) #Creates conda environment.
    import subprocess

    checked = subprocess.run([python, "-c", "import sklearn, joblib, numpy"], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr

    # -- Ladda upp en omtränad modell
    import joblib

    from sklearn.datasets import load_diabetes
    from sklearn.linear_model import Ridge

    dataset_x, dataset_y = load_diabetes(return_X_y=True)

    sk_model = Ridge().fit(dataset_x, dataset_y)

    joblib.dump(sk_model, "sklearn_regression_model.pkl")

    from aml_core.model import Model

    model = Model.register(model_path="sklearn_regression_model.pkl",
                           model_name="sklearn_regression_model",
                           tags={'area': "diabetes", 'type': "regression"},
                           description="Ridge regression model to predict diabetes",
                           workspace=ws)
    assert (model.id, model.tags["area"]) == ("sklearn_regression_model:1", "diabetes")


def test_legacy_deploy_from_model_with_an_image_configuration(tutorial_done):
    """The 2018 guide's second option (deploy_from_model), on the local target."""
    import requests

    from aml_core.images import ContainerImage
    from aml_core.model import Model
    from aml_core.webservice import Webservice
    from aml_provider_local import LocalWebservice

    ws = tutorial_done
    image_config = ContainerImage.image_configuration(execution_script="score.py", runtime="python")
    service = Webservice.deploy_from_model(workspace=ws, name="legacy-mnist", models=[Model(ws, "sklearn_mnist")],
                                           image_config=image_config,
                                           deployment_config=LocalWebservice.deploy_configuration())
    try:
        service.wait_for_deployment()
        response = requests.post(service.scoring_uri, json={"data": [[0.0] * 784]}, timeout=30)
        assert response.status_code == 200 and len(response.json()) == 1
    finally:
        service.delete()
