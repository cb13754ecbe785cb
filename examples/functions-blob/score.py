# A linear model kept as JSON: init() loads it once when the function app starts,
# run() scores one blob's {"data": [[...], ...]}.
import json
import os


def init():
    global model
    with open(os.path.join(os.environ["AZUREML_MODEL_DIR"], "linear.json")) as handle:
        model = json.load(handle)
    print("linear model loaded")


def run(raw_data):
    rows = json.loads(raw_data)["data"]
    return [sum(w * x for w, x in zip(model["weights"], row)) + model["bias"] for row in rows]
