"""Issue 15, part 4: the simulated sensor (an image our packaging builds) → the model module →
$upstream; the consumer sees every prediction in order, none lost across a restart of the model
module and a restart of the edge hub."""

from __future__ import annotations

from aml_core.model import Model

from .conftest import DEVICE, inference_config
from .test_iotedge import config, contiguous, gaps, predictions, wait_for


def test_predictions_in_order_none_lost_across_model_and_edge_hub_restarts(workspace, model, hub, tmp_path):
    service = Model.deploy(workspace, "anomaly", [model], inference_config(tmp_path),
                           config(workspace, count=0, interval=0.05))
    service.wait_for_deployment()
    device = hub.edge_device(DEVICE)
    wait_for(lambda: len(predictions(hub)) >= 10, what="first predictions")

    device.agent.restart_module("model")  # what the RestartModule direct method does
    restarted = len(predictions(hub))
    wait_for(lambda: len(predictions(hub)) >= restarted + 10, what="predictions after the model restart")

    device.edge_hub.restart()
    restarted = len(predictions(hub))
    wait_for(lambda: len(predictions(hub)) >= restarted + 10, what="predictions after the edge hub restart")

    got = predictions(hub)
    assert contiguous(got), f"lost or reordered at (index, before, after): {gaps(got)}; {len(got)} predictions"
    assert device.agent.modules["model"].restart_count == 1


# Scores as score_anomaly.py does, but holds reading 3 until the test opens the gate, so the
# edge hub can be stopped while the module has the message and has not yet sent its result.
GATED_SCORE = '''
import json, os, pathlib, time
import joblib

GATE = pathlib.Path({gate!r})

def init():
    global model
    model = joblib.load(os.path.join(os.environ["AZUREML_MODEL_DIR"], "temperature_model.pkl"))

def run(raw_data):
    reading = json.loads(raw_data)
    if reading["n"] == 3:
        (GATE / "holding").touch()
        deadline = time.monotonic() + 120
        while not (GATE / "open").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
    expected = float(model.predict([[reading["machine"]["pressure"]]])[0])
    return {{"n": reading["n"], "expected": round(expected, 3), "anomaly": False, "version": 1}}
'''


def test_a_result_is_kept_while_the_edge_hub_is_down_and_sent_when_it_returns(workspace, model, hub, tmp_path):
    from aml_core.inference import InferenceConfig

    gate, app = tmp_path / "gate", tmp_path / "gated"
    gate.mkdir()
    app.mkdir()
    (app / "score.py").write_text(GATED_SCORE.format(gate=str(gate)))
    service = Model.deploy(workspace, "anomaly", [model], InferenceConfig(entry_script="score.py", source_directory=str(app)),
                           config(workspace, count=6, interval=0.05))
    service.wait_for_deployment()
    device = hub.edge_device(DEVICE)
    wait_for(lambda: (gate / "holding").exists(), what="the model module holding reading 3")
    device.edge_hub.stop()
    (gate / "open").touch()  # the module now sends its result while the edge hub is down
    wait_for(lambda: "edge hub unreachable" in service.get_logs(), what="the module retrying its send")
    device.edge_hub.start()
    got = wait_for(lambda: len({p["n"] for p in predictions(hub)}) == 6 and predictions(hub), what="all 6 predictions")
    assert contiguous(got), f"lost or reordered at (index, before, after): {gaps(got)}"
    assert device.agent.modules["model"].restart_count == 0, service.get_logs()
