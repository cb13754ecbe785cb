"""App Service: the documents' path. Package the quickstart model as an image, run that image as
a Linux web app, score it with the service key, swap in a new image through a staging slot,
read the web app's log stream, clean up.

Everything comes from the cloud profile (``AML_PROFILE``, default ``emulator``): start the
emulator first (``python -m aml_emulator start --service registry --service arm``) and the web
app runs on it; point the profile at Azure and the same script creates a real one.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import joblib
from sklearn.datasets import load_diabetes
from sklearn.linear_model import Ridge

from aml_core import Environment, InferenceConfig, Model, Webservice, Workspace
from aml_provider_appservice import AppServiceWebservice

#: the quickstart's score.py and requirements.txt are what this example serves
QUICKSTART = Path(__file__).resolve().parent.parent / "quickstart"
SAMPLE = {"data": [[1, 2, 3, 4, 5, 6, 7, 8, 9, 10], [10, 9, 8, 7, 6, 5, 4, 3, 2, 1]]}


def main(workdir: Path, profile: str) -> list[float]:
    # The workspace pushes its images to the profile's container registry, where App Service pulls them.
    ws = Workspace.create(workdir / "workspace", name="appservice-example", container_registry=f"profile:{profile}",
                          exist_ok=True)

    # 1. Train and register the model.
    x, y = load_diabetes(return_X_y=True)
    model_path = workdir / "sklearn_regression_model.pkl"
    joblib.dump(Ridge().fit(x, y), model_path)
    model = Model.register(ws, model_path=str(model_path), model_name="sklearn_regression_model")
    print(f"Registered {model.id}")

    # 2. Package model + score.py + environment as an image (what the documents hand to `az webapp create`).
    env = Environment.from_pip_requirements("appservice-env", QUICKSTART / "requirements.txt")
    inference_config = InferenceConfig(entry_script="score.py", source_directory=str(QUICKSTART), environment=env)
    package = Model.package(ws, [model], inference_config, image_name="diabetes")
    print(f"Image: {package.location}")

    # 3. Run the image as a web app on a Standard plan (it has the staging slot updates use).
    config = AppServiceWebservice.deploy_configuration(plan_name="diabetes-plan", sku="S1", auth_enabled=True)
    service = Webservice.deploy_from_image(ws, "diabetes-app", package, config, overwrite=True)
    try:
        service.wait_for_deployment(show_output=True)
        print(f"State: {service.state}")

        # 4. Score, with the service key (run() sends it for you).
        predictions = service.run(json.dumps(SAMPLE))
        print(f"Predictions: {predictions}")

        # 5. A new image, warmed in the staging slot, then swapped in.
        v2 = InferenceConfig(entry_script="score.py", source_directory=str(QUICKSTART), environment=env,
                             description="v2")
        service.update(image=Model.package(ws, [model], v2, image_name="diabetes"))
        print(f"Updated: {service.state}, predictions {service.run(json.dumps(SAMPLE))}")
        print("Log stream: " + ("reachable" if service.get_logs() else "empty"))
        return predictions
    finally:
        # 6. Clean up: the web app (and the plan this created) would otherwise keep running.
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
        with tempfile.TemporaryDirectory(prefix="aml-appservice-") as tmp:
            main(Path(tmp), args.profile)
