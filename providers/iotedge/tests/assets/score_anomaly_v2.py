"""Scores one sensor reading: a Ridge model's expected temperature for the reading's pressure,
and whether the measured temperature is an anomaly (more than 3 degrees off)."""

import json
import os

import joblib


def init():
    global model
    model = joblib.load(os.path.join(os.environ["AZUREML_MODEL_DIR"], "temperature_model.pkl"))
    print("anomaly model loaded", flush=True)


def run(raw_data):
    reading = json.loads(raw_data)
    machine = reading["machine"]
    expected = float(model.predict([[machine["pressure"]]])[0])
    return {"n": reading["n"], "expected": round(expected, 3),
            "anomaly": abs(machine["temperature"] - expected) > 3.0, "version": 2}
