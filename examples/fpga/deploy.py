"""Convert a digits featurizer + classifier for the FPGA accelerator, package it with
AccelContainerImage, deploy it to an AKS cluster with an FPGA node pool (Standard_PB6s), and
score it over gRPC with PredictionClient, as the Brainwave samples do.

    aml emulator start            # or any cloud profile: the code reads only the profile
    python examples/fpga/deploy.py [--workdir DIR] [--format MSFP16] [--profile NAME]

Prints the first predictions, the accuracy on the held-out digits next to the float model's
(onnxruntime), then deletes the service and the cluster.
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
from PIL import Image as PILImage

sys.path.insert(0, str(Path(__file__).resolve().parent))

from digits_models import INPUT, OUTPUT, _run, build_digits_model  # noqa: E402

from aml_core import Model, Workspace  # noqa: E402
from aml_core.compute import ComputeTarget  # noqa: E402
from aml_core.images import Image  # noqa: E402
from aml_core.profiles import CloudProfile  # noqa: E402
from aml_core.webservice import Webservice  # noqa: E402
from aml_provider_aks import AksCompute, AksWebservice  # noqa: E402
from aml_provider_fpga import AccelContainerImage, AccelOnnxConverter, PredictionClient  # noqa: E402
from aml_provider_fpga.converter import ImagePreprocessing  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--format", default="MSFP16")
    parser.add_argument("--profile", default=None,
                        help="cloud profile (default: $AML_PROFILE, else emulator)")
    args = parser.parse_args()
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="aml-fpga-"))
    workdir.mkdir(parents=True, exist_ok=True)
    profile = CloudProfile.load(args.profile)

    print("Training the featurizer and the classifier head on scikit-learn's digits ...")
    model, data = build_digits_model()
    onnx.save(model, str(workdir / "digits.onnx"))

    ws = Workspace.create(workdir / "workspace", exist_ok=True,
                          container_registry=f"profile:{profile.name}")
    registered = Model.register(ws, workdir / "digits.onnx", "digits-cnn")
    conversion = AccelOnnxConverter.convert_onnx_model(
        ws, registered, input_tensors=INPUT, output_tensors=OUTPUT, block_format=args.format,
        output_aliases={"output_alias": OUTPUT},
        # PNG pixels 0..255 -> the digits' 0..16 scale, one grey channel, NCHW
        preprocessing=ImagePreprocessing(height=8, width=8, mode="L", scale=16 / 255))
    conversion.wait_for_completion(show_output=True)
    converted = conversion.result
    print(f"Converted model: {converted.id} ({converted.tags['accel.format']})")

    image = Image.create(ws, "digits-accel", [converted],
                         AccelContainerImage.image_configuration())
    image.wait_for_creation(show_output=True)

    print("Provisioning an AKS cluster with one Standard_PB6s (FPGA) node ...")
    aks_target = ComputeTarget.create(ws, "fpga-aks", AksCompute.provisioning_configuration(
        vm_size="Standard_PB6s", agent_count=1, location="eastus", cluster_purpose="DevTest"))
    aks_target.wait_for_completion(show_output=True)
    try:
        config = AksWebservice.deploy_configuration(autoscale_enabled=False, num_replicas=1,
                                                    auth_enabled=True)
        service = Webservice.deploy_from_image(ws, "digits-fpga", image, config, aks_target)
        service.wait_for_deployment(show_output=True)
        print(f"Service {service.name}: {service.state} at {service.scoring_uri}")
        try:
            score(service, data, model, args.format)
        finally:
            service.delete()
            print("Service deleted")
    finally:
        aks_target.delete()


def score(service, data, model, block_format: str) -> None:
    # the documents' way from the scoring URI to the client's address
    address = service.scoring_uri
    use_ssl = address.startswith("https")
    host, _, port = address[address.find("/") + 2:].strip("/").partition(":")
    port = int(port) if port else (443 if use_ssl else 80)
    key, _ = service.get_keys()
    client = PredictionClient(host, port, use_ssl=use_ssl, access_token=key,
                              service_name=service.name)
    probabilities = client.score_numpy_array(data.test_images)
    predictions = probabilities.argmax(axis=1)
    reference = _run(model, data.test_images).argmax(axis=1)
    print(f"Predictions: {predictions[:10].tolist()}")
    print(f"Labels:      {data.test_labels[:10].tolist()}")
    accuracy = float((predictions == data.test_labels).mean())
    float_accuracy = float((reference == data.test_labels).mean())
    print(f"Accuracy: {accuracy:.4f} on the accelerator ({block_format}), "
          f"{float_accuracy:.4f} in float (onnxruntime); top-1 agreement "
          f"{float((predictions == reference).mean()):.4f}")
    # One digit as an image file, decoded and preprocessed by the service
    pixels = (data.test_images[0, 0] * 255 / 16).round().astype(np.uint8)
    buffer = io.BytesIO()
    PILImage.fromarray(pixels, mode="L").save(buffer, format="PNG")
    image_scores = client.score_image(buffer.getvalue())
    print(f"Image of a {data.test_labels[0]} scored as {int(image_scores.argmax())} "
          f"(as a tensor: {int(predictions[0])})")
    client.close()


if __name__ == "__main__":
    main()
