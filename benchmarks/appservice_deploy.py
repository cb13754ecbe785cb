"""App Service on the emulator next to the local target: deploy-to-first-score, and scoring throughput.

Against the in-process emulator (``aml_emulator.Emulator`` with registry and Azure Resource
Manager on loopback, its cloud profile in a private ``AML_PROFILE_DIR``), through the public
API only, with the scikit-learn Ridge and ``score.py`` of ``aci_deploy.py`` (whose helpers this
script uses, so both benchmarks measure the same way):

* **deploy-to-first-score**: from the ``Model.deploy`` call until ``service.run(...)`` first
  returns predictions, for ``AppServiceWebservice.deploy_configuration()`` (image built and
  pushed, a Linux plan and a web app created through azure-mgmt-web, the image pulled with the
  app settings' credentials and started on the process engine behind the site's HTTPS front
  end) and for ``LocalWebservice.deploy_configuration(engine="process")``. The two take turns
  going first; both are deleted after each round. Reported: the median of each, and
  ``App Service / local`` as the median of the per-round ratios (target <= 1.5).
* **scoring throughput**: requests/s of ``POST /score`` (2 rows) through the web app's
  ``scoring_uri`` (HTTPS, the site's front end, then the container) against the same model
  served by ``python -m aml_core.runtime serve`` started directly (plain HTTP), from
  ``--clients`` threads with keep-alive sessions for ``--duration`` seconds each.
  Reported: medians and ``App Service / direct`` (target >= 0.9).

No time is asserted. Usage::

    python benchmarks/appservice_deploy.py [--rounds 3] [--duration 5] [--clients 4] [--arm-retry-after 1] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from aci_deploy import SCORE_PY, deploy_to_first_score, start_direct_runtime, throughput  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per throughput run")
    parser.add_argument("--clients", type=int, default=4, help="client threads per throughput run")
    parser.add_argument("--arm-retry-after", type=float, default=1.0)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    import joblib
    from sklearn.datasets import load_diabetes
    from sklearn.linear_model import Ridge

    from aml_core.inference import InferenceConfig
    from aml_core.model import Model
    from aml_core.workspace import Workspace
    from aml_emulator import Emulator
    from aml_provider_appservice import AppServiceWebservice
    from aml_provider_local import LocalWebservice

    with tempfile.TemporaryDirectory(prefix="aml-bench-appservice-") as tmp:
        root = Path(tmp)
        os.environ["AML_PROFILE_DIR"] = str(root / "profiles")
        os.environ.pop("AML_PROFILE", None)
        app = root / "app"
        app.mkdir()
        (app / "score.py").write_text(SCORE_PY)
        model_dir = root / "model"
        model_dir.mkdir()
        x, y = load_diabetes(return_X_y=True)
        joblib.dump(Ridge().fit(x, y), model_dir / "sklearn_regression_model.pkl")
        inference = InferenceConfig(entry_script="score.py", source_directory=str(app))
        results: dict[str, list[float]] = {"appservice": [], "local": [], "ratio": [], "appservice_rps": [],
                                           "direct_rps": []}
        with Emulator(root / "emulator", services=["registry", "arm"], arm_retry_after=args.arm_retry_after) as emu:
            emu.profile().save()
            # the web app's https host has the emulator CA's certificate; the client trusts it
            os.environ["REQUESTS_CA_BUNDLE"] = str(emu.ca_bundle)
            ws = Workspace.create(root / "ws", container_registry="profile:emulator")
            model = Model.register(ws, str(model_dir / "sklearn_regression_model.pkl"), "sklearn_regression_model")
            direct, direct_url = start_direct_runtime(root, app, model_dir)
            try:
                for round_ in range(args.rounds):
                    order = ["appservice", "local"] if round_ % 2 == 0 else ["local", "appservice"]
                    made: dict[str, Any] = {}
                    seconds: dict[str, float] = {}
                    try:
                        for target in order:
                            config = (AppServiceWebservice.deploy_configuration(plan_name=f"bench-plan-{round_}")
                                      if target == "appservice"
                                      else LocalWebservice.deploy_configuration(engine="process"))
                            seconds[target], made[target] = deploy_to_first_score(
                                ws, f"bench-{target}-{round_}", model, inference, config)
                        results["appservice"].append(seconds["appservice"])
                        results["local"].append(seconds["local"])
                        results["ratio"].append(seconds["appservice"] / seconds["local"])
                        pair = [("appservice", made["appservice"].scoring_uri), ("direct", direct_url)]
                        for label, url in (pair if round_ % 2 == 0 else pair[::-1]):
                            results[f"{label}_rps"].append(throughput(url, {"Content-Type": "application/json"},
                                                                      args.duration, args.clients))
                        print(f"round {round_ + 1}: deploy-to-first-score App Service {seconds['appservice']:.2f} s, "
                              f"local {seconds['local']:.2f} s; throughput App Service "
                              f"{results['appservice_rps'][-1]:.0f} req/s, direct {results['direct_rps'][-1]:.0f} "
                              f"req/s", flush=True)
                    finally:
                        for service in made.values():
                            service.delete()
            finally:
                direct.terminate()
                direct.wait(timeout=60)
    med = {k: statistics.median(v) for k, v in results.items()}
    print(f"\nmedians over {args.rounds} round(s), ARM Retry-After {args.arm_retry_after:g} s, "
          f"{args.clients} client threads x {args.duration:g} s:")
    print(f"  deploy-to-first-score: App Service {med['appservice']:.2f} s, local {med['local']:.2f} s, "
          f"App Service / local {med['ratio']:.2f} (target <= 1.5)")
    print(f"  scoring throughput: App Service {med['appservice_rps']:.0f} req/s, direct runtime "
          f"{med['direct_rps']:.0f} req/s, App Service / direct {med['appservice_rps'] / med['direct_rps']:.2f} "
          f"(target >= 0.9)")
    if args.json:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "results": results,
                                         "medians": med, "python": platform.python_version()}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
