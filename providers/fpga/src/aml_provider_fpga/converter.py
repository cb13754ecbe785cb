"""``AccelOnnxConverter``: check an ONNX model against the accelerator and register it converted.

The source documents convert a TensorFlow graph (``convert_tf_model``); ONNX is what this
machine can carry, so the converter takes a registered ONNX model. Converting means:

1. the graph's operators are checked against :data:`SUPPORTED_OPERATORS` (what the
   accelerator runs; anything else is refused naming the operator and the node), and the
   named input and output tensors must exist;
2. the graph and a manifest (``accelerator.json``: block format, vector precision, input and
   output aliases, image preprocessing) are registered as a new model,
   ``<name>.accel`` with tags saying what it was converted from.

Numerics are not applied here: the accelerator quantises the weights when it loads the model,
so one converted model can be evaluated in several formats.
"""

from __future__ import annotations

import json
import tempfile
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from aml_core import InvalidConfig, Model, Workspace
from aml_core.errors import AmlError

#: The accelerator's operator set (docs/fpga.md lists what each runs as).
SUPPORTED_OPERATORS = frozenset({
    # dot products, run on the matrix-vector tiles in the block format
    "Conv", "Gemm", "MatMul",
    # vector operations, run in the vector units' precision
    "Add", "Relu", "LeakyRelu", "Clip", "Sigmoid", "Tanh", "MaxPool", "AveragePool",
    "GlobalAveragePool", "GlobalMaxPool", "BatchNormalization", "Softmax",
    # data movement
    "Concat", "Flatten", "Reshape", "Transpose", "Identity", "Dropout", "Constant",
    # only to float32: exporters such as skl2onnx put one at a classifier head's input
    "Cast",
})
BLOCK_FORMATS = ("MSFP12", "MSFP16", "MXFP8_E4M3", "MXFP8_E5M2", "MXFP6_E2M3", "MXFP6_E3M2",
                 "MXFP4_E2M1", "MXINT8")
MANIFEST = "accelerator.json"
GRAPH = "model.onnx"


class UnsupportedOperator(InvalidConfig):
    """The model has an operator the accelerator cannot run."""

    code = "UnsupportedOperator"


@attrs.frozen(kw_only=True)
class ImagePreprocessing:
    """How the service turns an encoded image into the model's input (see docs/fpga.md)."""

    height: int
    width: int
    mode: str = "RGB"
    layout: str = "NCHW"
    scale: float = 1.0
    offset: tuple[float, ...] = (0.0,)


class AccelConversion:
    """A running conversion: ``wait_for_completion()``, then ``.result`` (the converted Model)."""

    def __init__(self, thread_target) -> None:
        self._result: Model | None = None
        self._error: BaseException | None = None
        self._done = threading.Event()
        self.status = "Running"

        def run() -> None:
            try:
                self._result = thread_target()
                self.status = "Succeeded"
            except BaseException as exc:  # handed to the caller in wait_for_completion
                self._error = exc
                self.status = "Failed"
            finally:
                self._done.set()

        threading.Thread(target=run, name="accel-conversion", daemon=True).start()

    def wait_for_completion(self, show_output: bool = False, timeout: float | None = None) -> None:
        if not self._done.wait(timeout):
            raise AmlError(f"the conversion did not finish within {timeout} s")
        if show_output:
            print(f"Conversion {self.status}")
        if self._error is not None:
            raise self._error

    @property
    def result(self) -> Model:
        self.wait_for_completion()
        assert self._result is not None
        return self._result


class AccelOnnxConverter:
    """Converts registered ONNX models for the accelerator."""

    @staticmethod
    def convert_onnx_model(workspace: Workspace, registered_model: Model,
                           input_tensors: str | Sequence[str], output_tensors: str | Sequence[str],
                           *, block_format: str = "MSFP16", vector_dtype: str = "float16",
                           output_aliases: Mapping[str, str] | None = None,
                           input_alias: str = "images",
                           preprocessing: ImagePreprocessing | None = None) -> AccelConversion:
        """Start converting ``registered_model``; tensor names may be comma-separated.

        Bad arguments (an unknown format) fail here; what needs the model's graph (unknown
        tensors, unsupported operators) fails in ``wait_for_completion()``.
        """
        if block_format.upper() not in BLOCK_FORMATS:
            raise InvalidConfig(f"unknown block_format {block_format!r}; use one of "
                                f"{', '.join(BLOCK_FORMATS)}")
        inputs = _names(input_tensors, "input_tensors")
        outputs = _names(output_tensors, "output_tensors")
        aliases = dict(output_aliases or {name: name for name in outputs})
        unknown = sorted(set(aliases.values()) - set(outputs))
        if unknown:
            raise InvalidConfig(f"output_aliases name {unknown}, which are not output_tensors "
                                f"{outputs}")
        manifest = {"format": block_format.upper(), "vector_dtype": vector_dtype,
                    "input_alias": input_alias, "output_aliases": aliases,
                    "inputs": inputs, "outputs": outputs,
                    "preprocessing": attrs.asdict(preprocessing) if preprocessing else None,
                    "converted_from": registered_model.id}
        return AccelConversion(lambda: _convert(workspace, registered_model, manifest))


def _names(value: str | Sequence[str], what: str) -> list[str]:
    names = [n.strip() for n in value.split(",")] if isinstance(value, str) else list(value)
    names = [n for n in names if n]
    if not names:
        raise InvalidConfig(f"{what} names no tensor")
    return names


def _convert(workspace: Workspace, registered_model: Model, manifest: dict[str, Any]) -> Model:
    import onnx

    with tempfile.TemporaryDirectory(prefix="aml-accel-") as scratch:
        downloaded = Path(registered_model.download(scratch, exist_ok=True))
        candidates = [downloaded] if downloaded.is_file() else sorted(downloaded.rglob("*.onnx"))
        if len(candidates) != 1 or candidates[0].suffix != ".onnx":
            raise InvalidConfig(f"model {registered_model.id} must be one .onnx file (or a "
                                f"folder with exactly one); found {[c.name for c in candidates]}")
        try:
            graph = onnx.load(str(candidates[0]))
        except Exception as exc:  # onnx raises DecodeError, ValueError, OSError
            raise InvalidConfig(f"model {registered_model.id} is not a loadable ONNX file: "
                                f"{exc}") from None
        _check(graph, manifest)
        out = Path(scratch) / "converted"
        out.mkdir()
        onnx.save(graph, str(out / GRAPH))
        (out / MANIFEST).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
        return Model.register(
            workspace, out, f"{registered_model.name}.accel",
            tags={"accel.format": manifest["format"],
                  "accel.converted_from": registered_model.id},
            description=f"{registered_model.id} converted for the FPGA accelerator "
                        f"({manifest['format']})")


def _check(graph, manifest: dict[str, Any]) -> None:
    for node in graph.graph.node:
        if node.domain not in ("", "ai.onnx") or node.op_type not in SUPPORTED_OPERATORS:
            op = f"{node.domain}.{node.op_type}" if node.domain not in ("", "ai.onnx") \
                else node.op_type
            raise UnsupportedOperator(
                f"operator {op!r} of node {node.name or node.output[0]!r} is not supported by "
                f"the accelerator (it runs {', '.join(sorted(SUPPORTED_OPERATORS))}); run it "
                f"on the host before or after the accelerated graph and convert again")
        if node.op_type == "Cast" and any(
                a.name == "to" and a.i != 1 for a in node.attribute):  # 1 = FLOAT
            raise UnsupportedOperator(
                f"node {node.name!r} casts to a type other than float32; the accelerator "
                f"computes only in float32 at its boundary: cast on the host instead")
    initializers = {init.name for init in graph.graph.initializer}
    graph_inputs = [v.name for v in graph.graph.input if v.name not in initializers]
    graph_outputs = [v.name for v in graph.graph.output]
    if sorted(manifest["inputs"]) != sorted(graph_inputs):
        raise InvalidConfig(f"input_tensors {manifest['inputs']} do not match the graph's "
                            f"inputs {graph_inputs}")
    missing = [name for name in manifest["outputs"] if name not in graph_outputs]
    if missing:
        raise InvalidConfig(f"output_tensors {missing} are not outputs of the graph; it has "
                            f"{graph_outputs}")
