# A linear model kept as JSON weights: init() loads it once, run() scores {"data": [[...], ...]}.
import json
import os
import time

model = None
init_calls = 0


def init():
    global model, init_calls
    init_calls += 1
    with open(os.path.join(os.environ["AZUREML_MODEL_DIR"], "weights.json")) as handle:
        model = json.load(handle)


def run(raw_data):
    document = json.loads(raw_data)
    # tests hold a call in progress (to kill the host mid-event) until they create this file
    gate = document.get("hold_until_exists")
    while gate and not os.path.exists(gate):
        time.sleep(0.05)
    rows = document["data"]
    return {"predictions": [sum(w * x for w, x in zip(model["weights"], row)) + model["bias"] for row in rows],
            "init_calls": init_calls}
