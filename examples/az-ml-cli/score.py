import json
import os


def init():
    global factor
    with open(os.path.join(os.environ["AZUREML_MODEL_DIR"], "factor.txt")) as f:
        factor = float(f.read())


def run(raw_data):
    return [x * factor for x in json.loads(raw_data)["data"]]
