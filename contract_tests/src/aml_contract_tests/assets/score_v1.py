import json
import os

import joblib
import numpy as np


def init():
    global model
    model_path = os.path.join(os.environ["AZUREML_MODEL_DIR"], "sklearn_regression_model.pkl")
    model = joblib.load(model_path)
    print("contract model loaded")


def run(raw_data):
    data = np.array(json.loads(raw_data)["data"])
    return model.predict(data).tolist()
