import json
import os

import joblib
import numpy as np


def init():
    global model
    model = joblib.load(os.path.join(os.environ["AZUREML_MODEL_DIR"], "sklearn_regression_model.pkl"))


def run(raw_data):
    data = np.array(json.loads(raw_data)["data"])
    return {"version": 2, "predictions": model.predict(data).tolist()}
