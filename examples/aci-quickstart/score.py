# The entry script of the Azure ML how-to guides: init() loads the model once,
# run() scores one request. AZUREML_MODEL_DIR points at azureml-models/<name>/<version>.
import json
import os

import joblib
import numpy as np


def init():
    global model
    model_path = os.path.join(os.getenv("AZUREML_MODEL_DIR"), "sklearn_regression_model.pkl")
    model = joblib.load(model_path)


def run(raw_data):
    data = json.loads(raw_data)["data"]
    data = np.array(data)
    result = model.predict(data)
    # You can return any JSON-serializable data.
    return result.tolist()
