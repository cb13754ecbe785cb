"""ACI quickstart: train a model, register it, deploy it to Azure Container Instances, score it
with the service key, read its logs, clean up.

Everything comes from the cloud profile (``AML_PROFILE``, default ``emulator``): start the
emulator first (``python -m aml_emulator start --service registry --service arm``) and the
service runs on it; point the profile at Azure and the same script deploys to real ACI.
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
from aml_provider_aci import AciWebservice

HERE = Path(__file__).resolve().parent
SAMPLE = {"data": [[1, 2, 3, 4, 5, 6, 7, 8, 9, 10], [10, 9, 8, 7, 6, 5, 4, 3, 2, 1]]}


def main(workdir: Path, profile: str) -> list[float]:
    # The workspace pushes its images to the profile's container registry, where ACI pulls them.
    ws = Workspace.create(workdir / "workspace", name="aci-quickstart", container_registry=f"profile:{profile}",
                          exist_ok=True)

    # 1. Train and register the model.
    x, y = load_diabetes(return_X_y=True)
    model_path = workdir / "sklearn_regression_model.pkl"
    joblib.dump(Ridge().fit(x, y), model_path)
    model = Model.register(ws, model_path=str(model_path), model_name="sklearn_regression_model",
                           tags={"area": "diabetes", "type": "regression"})
    print(f"Registered {model.id}")

    # 2. Describe how to serve it.
    env = Environment.from_pip_requirements("aci-quickstart-env", HERE / "requirements.txt")
    inference_config = InferenceConfig(entry_script="score.py", source_directory=str(HERE), environment=env)

    # 3. Deploy to ACI: one container group, 1 core and 1 GB, key auth on.
    aci_config = AciWebservice.deploy_configuration(cpu_cores=1, memory_gb=1, auth_enabled=True,
                                                    tags={"area": "diabetes"}, description="Ridge on ACI")
    service = Model.deploy(ws, "aci-quickstart", [model], inference_config, aci_config, overwrite=True)
    try:
        service.wait_for_deployment(show_output=True)
        print(f"State: {service.state}")
        print(f"Scoring URI: {service.scoring_uri}")

        # 4. Score, with the service key (run() sends it for you).
        predictions = service.run(json.dumps(SAMPLE))
        print(f"Predictions: {predictions}")
        primary, _secondary = service.get_keys()
        print(f"Keys: 2 (primary is {len(primary)} characters)")
        print("Last log line: " + service.get_logs(num_lines=1).strip())
        return predictions
    finally:
        # 5. Clean up: the container group would otherwise keep running (and billing, on Azure).
        service.delete()
        print("Service deleted")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--profile", default="emulator", help="cloud profile to deploy with (default: emulator)")
    parser.add_argument("--workdir", type=Path, default=None, help="where the workspace goes (default: a temp dir)")
    args = parser.parse_args()
    if args.workdir:
        main(args.workdir, args.profile)
    else:
        with tempfile.TemporaryDirectory(prefix="aml-aci-quickstart-") as tmp:
            main(Path(tmp), args.profile)
