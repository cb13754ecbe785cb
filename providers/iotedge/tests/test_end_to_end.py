"""Issue 15, part 4: the simulated sensor (an image our packaging builds) → the model module →
$upstream; the consumer sees every prediction in order, none lost across a restart of the model
module and a restart of the edge hub."""

from __future__ import annotations

from aml_core.model import Model

from .conftest import DEVICE, inference_config
from .test_iotedge import config, contiguous, predictions, wait_for


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
    assert contiguous(got), [p["n"] for p in got]
    assert device.agent.modules["model"].restart_count == 1
