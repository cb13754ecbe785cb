"""Convert a digits featurizer + classifier for the FPGA accelerator, serve it on the emulated
accelerator, and score it over gRPC with PredictionClient, as the Brainwave samples do.

    python examples/fpga/deploy.py [--workdir DIR] [--format MSFP16]

Prints the first predictions, the accuracy on the held-out digits next to the float model's
(onnxruntime), and the modelled device latency.
"""

from __future__ import annotations

import argparse
import io
import os
import secrets
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))

from digits_models import INPUT, OUTPUT, _run, build_digits_model  # noqa: E402

from aml_core import Model, Workspace  # noqa: E402
from aml_provider_fpga import AccelOnnxConverter, PredictionClient  # noqa: E402
from aml_provider_fpga.converter import ImagePreprocessing  # noqa: E402


def start_accelerator(model_dir: str, key: str) -> tuple[subprocess.Popen, int]:
    """The accelerator runtime an FPGA node runs, as a process; returns it and its port."""
    env = {**os.environ, "AML_SCORING_KEYS": key}
    process = subprocess.Popen(
        [sys.executable, "-m", "aml_provider_fpga.accelerator", model_dir, "--host", "127.0.0.1",
         "--port", "0"], stdout=subprocess.PIPE, text=True, env=env)
    line = process.stdout.readline()  # "accelerator serving 1 model(s) on 127.0.0.1:PORT"
    if not line:
        raise SystemExit(f"the accelerator did not start (exit {process.wait()})")
    return process, int(line.rsplit(":", 1)[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--format", default="MSFP16")
    args = parser.parse_args()
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="aml-fpga-"))

    print("Training the featurizer and the classifier head on scikit-learn's digits ...")
    model, data = build_digits_model()
    onnx.save(model, str(workdir / "digits.onnx"))

    ws = Workspace.create(workdir / "workspace", exist_ok=True)
    registered = Model.register(ws, workdir / "digits.onnx", "digits-cnn")
    conversion = AccelOnnxConverter.convert_onnx_model(
        ws, registered, input_tensors=INPUT, output_tensors=OUTPUT, block_format=args.format,
        output_aliases={"output_alias": OUTPUT},
        # PNG pixels 0..255 -> the digits' 0..16 scale, one grey channel, NCHW
        preprocessing=ImagePreprocessing(height=8, width=8, mode="L", scale=16 / 255))
    conversion.wait_for_completion(show_output=True)
    converted = conversion.result
    print(f"Converted model: {converted.id} ({converted.tags['accel.format']})")
    model_dir = converted.download(workdir / "converted", exist_ok=True)

    key = secrets.token_urlsafe(24)
    accelerator, port = start_accelerator(model_dir, key)
    try:
        client = PredictionClient("127.0.0.1", port, access_token=key, service_name="digits")
        probabilities = client.score_numpy_array(data.test_images)
        predictions = probabilities.argmax(axis=1)
        reference = _run(model, data.test_images).argmax(axis=1)
        print(f"Predictions: {predictions[:10].tolist()}")
        print(f"Labels:      {data.test_labels[:10].tolist()}")
        accuracy = float((predictions == data.test_labels).mean())
        float_accuracy = float((reference == data.test_labels).mean())
        print(f"Accuracy: {accuracy:.4f} on the accelerator ({args.format}), "
              f"{float_accuracy:.4f} in float (onnxruntime); top-1 agreement "
              f"{float((predictions == reference).mean()):.4f}")
        # One digit as an image file, decoded and preprocessed by the service
        pixels = (data.test_images[0, 0] * 255 / 16).round().astype(np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(pixels, mode="L").save(buffer, format="PNG")
        image_scores = client.score_image(buffer.getvalue())
        print(f"Image of a {data.test_labels[0]} scored as {int(image_scores.argmax())} "
              f"(as a tensor: {int(predictions[0])})")
        client.close()
    finally:
        accelerator.terminate()
        accelerator.wait(timeout=30)
    print("Accelerator stopped")


if __name__ == "__main__":
    main()
