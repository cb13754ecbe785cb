"""Quickstart: train a model, register it, deploy it on this machine, score it, clean up.

No cloud account and no container engine: the service runs as a local process.
Run it with ``make demo`` (or ``python examples/quickstart/deploy.py`` in the dev venv).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import joblib
from sklearn.datasets import load_diabetes
from sklearn.linear_model import Ridge

from aml_core import Environment, InferenceConfig, Model, Workspace
from aml_provider_local import LocalWebservice

HERE = Path(__file__).resolve().parent
SAMPLE = {"data": [[1, 2, 3, 4, 5, 6, 7, 8, 9, 10], [10, 9, 8, 7, 6, 5, 4, 3, 2, 1]]}


def main(workdir: Path, port: int | None) -> list[float]:
    ws = Workspace.create(workdir / "workspace", name="quickstart", exist_ok=True)

    # 1. Train and register the model.
    x, y = load_diabetes(return_X_y=True)
    model_path = workdir / "sklearn_regression_model.pkl"
    joblib.dump(Ridge().fit(x, y), model_path)
    model = Model.register(ws, model_path=str(model_path), model_name="sklearn_regression_model",
                           tags={"area": "diabetes", "type": "regression"},
                           description="Ridge regression on scikit-learn's diabetes data")
    print(f"Registered {model.id}")

    # 2. Describe how to serve it.
    env = Environment.from_pip_requirements("quickstart-env", HERE / "requirements.txt")
    inference_config = InferenceConfig(entry_script="score.py", source_directory=str(HERE), environment=env)

    # 3. Deploy locally and wait, showing progress.
    deployment_config = LocalWebservice.deploy_configuration(port=port)
    service = Model.deploy(ws, "quickstart-local", [model], inference_config, deployment_config, overwrite=True)
    try:
        service.wait_for_deployment(show_output=True)
        print(f"Scoring URI: {service.scoring_uri}")

        # 4. Score.
        predictions = service.run(json.dumps(SAMPLE))
        print(f"Predictions: {predictions}")
        return predictions
    finally:
        # 5. Clean up: the service would otherwise outlive this script.
        service.delete()
        print("Service deleted")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=None, help="port on 127.0.0.1 (default: a free one)")
    parser.add_argument("--workdir", type=Path, default=None, help="where the workspace goes (default: a temp dir)")
    args = parser.parse_args()
    if args.workdir:
        main(args.workdir, args.port)
    else:
        with tempfile.TemporaryDirectory(prefix="aml-quickstart-") as tmp:
            main(Path(tmp), args.port)
