"""Scores one temperature reading: the Ridge model's expected temperature for its pressure, and
whether the measured one is an anomaly."""

import json
import os

import joblib


def init():
    global model
    model = joblib.load(os.path.join(os.environ["AZUREML_MODEL_DIR"], "temperature_model.pkl"))
    print("temperature model loaded", flush=True)


def run(raw_data):
    reading = json.loads(raw_data)
    machine = reading["machine"]
    expected = float(model.predict([[machine["pressure"]]])[0])
    return {"n": reading.get("n"), "expected": round(expected, 2), "anomaly": abs(machine["temperature"] - expected) > 3.0}
