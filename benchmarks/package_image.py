"""How long packaging the quickstart image takes: our pure-Python builder vs ``podman build``.

Measured, each as the median of N runs:

* ``build_image`` (app, model, runtime layers; no base): what the process engine runs;
* ``build_image`` on the Debian base image (the base's layers are reused, not recompressed);
* the same, written into an OCI layout that already holds the base (a stored image, as
  podman's is);
* the reference: ``podman build --pull=never`` of the Dockerfile context that
  ``write_build_context`` generates for the same inputs, on the same base (cache disabled
  with ``--no-cache`` so each run really builds), when podman and root are available.

The ratio ``podman / ours`` is printed in the same run. Usage::

    python benchmarks/package_image.py [-n 5] [--no-reference] [--json results.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent

SCORE_PY = """\
import json, os
import joblib
import numpy as np

def init():
    global model
    model = joblib.load(os.path.join(os.getenv("AZUREML_MODEL_DIR"), "sklearn_regression_model.pkl"))

def run(raw_data):
    return model.predict(np.array(json.loads(raw_data)["data"])).tolist()
"""


def make_quickstart(root: Path):
    import joblib
    from aml_core.oci import AppSpec, EnvironmentSpec, ModelFiles, PackageSpec
    from sklearn.datasets import load_diabetes
    from sklearn.linear_model import Ridge

    (root / "src").mkdir(parents=True)
    (root / "src" / "score.py").write_text(SCORE_PY)
    x, y = load_diabetes(return_X_y=True)
    joblib.dump(Ridge().fit(x, y), root / "sklearn_regression_model.pkl")

    def spec(base=None):
        return PackageSpec(
            app=AppSpec(entry_script="score.py", source_directory=root / "src"),
            environment=EnvironmentSpec(
                name="quickstart-env",
                python_version="3.11",
                pip_requirements=["numpy", "scikit-learn", "joblib"],
            ),
            models=[
                ModelFiles.from_path(
                    "sklearn_regression_model", 1, root / "sklearn_regression_model.pkl"
                )
            ],
            base=base,
        )

    return spec


def timed(fn, n: int) -> list[float]:
    out = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def base_image():
    from aml_core.oci import cached_image_from_rootfs

    done = subprocess.run(
        ["bash", str(REPO / "scripts" / "build-base-image.sh")],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    if done.returncode != 0:
        print(f"# base image unavailable: {done.stderr.strip()[-300:]}", file=sys.stderr)
        return None
    return cached_image_from_rootfs(Path(done.stdout.strip().splitlines()[-1]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=5, help="runs per measurement (median reported)")
    parser.add_argument(
        "--no-reference", action="store_true", help="skip the podman build reference"
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    from aml_core.oci import build_image, write_build_context, write_layout

    results: dict[str, float | str | int] = {"runs": args.n}
    with tempfile.TemporaryDirectory(prefix="aml-bench-") as tmp:
        tmp = Path(tmp)
        spec = make_quickstart(tmp / "qs")
        digests = {build_image(spec()).digest for _ in range(2)}
        assert len(digests) == 1, "the builder must be deterministic"
        results["ours_no_base_s"] = statistics.median(timed(lambda: build_image(spec()), args.n))

        base = base_image()
        if base is not None:
            results["ours_on_base_s"] = statistics.median(
                timed(lambda: build_image(spec(base)), args.n)
            )
            # stored, like podman's result: into an OCI layout that already holds the base
            layout = write_layout(base, tmp / "layout", tag="base")
            results["ours_on_base_stored_s"] = statistics.median(
                timed(lambda: write_layout(build_image(spec(base)), layout, tag="qs"), args.n)
            )
        if base is not None and not args.no_reference and os.geteuid() == 0:
            from aml_core.engines.docker import DockerEngine
            from aml_core.engines.podman import podman_service

            with podman_service(tmp / "podman") as svc:
                base_tag = DockerEngine(base_url=svc.docker_host, cache_dir=tmp / "cache").load(
                    base
                )
                context = write_build_context(spec(), tmp / "context", base_image=base_tag)

                def podman_build():
                    svc.podman(
                        "build",
                        "--pull=never",
                        "--no-cache",
                        "--network=host",
                        "-q",
                        "-t",
                        "localhost/bench:1",
                        str(context),
                    )

                results["podman_build_s"] = statistics.median(timed(podman_build, args.n))
            results["ratio_podman_over_ours_stored"] = (
                results["podman_build_s"] / results["ours_on_base_stored_s"]
            )

    for key, value in results.items():
        print(f"{key:34s} {value:.4f}" if isinstance(value, float) else f"{key:34s} {value}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
