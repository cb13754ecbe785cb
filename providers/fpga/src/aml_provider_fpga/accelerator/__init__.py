"""The FPGA accelerator emulator: ONNX graphs run with Brainwave-class narrow-precision numerics.

``formats`` holds the block formats (MSFP, OCP MX), ``graph`` loads and runs a model with them,
``latency`` models the device time of a request, ``server`` serves loaded models over gRPC
(KServe Open Inference Protocol v2 and TF-Serving ``Predict``).
"""

from .exceptions import AcceleratorError, InvalidInput, InvalidModel, UnsupportedOperator
from .formats import FORMATS, BlockFormat, get_format
from .graph import SUPPORTED_OPERATORS, AcceleratedModel, RunResult
from .latency import STRATIX10_280, AcceleratorPart, LatencyReport

__all__ = [
    "FORMATS", "STRATIX10_280", "SUPPORTED_OPERATORS", "AcceleratedModel", "AcceleratorError",
    "AcceleratorPart", "BlockFormat", "InvalidInput", "InvalidModel", "LatencyReport",
    "RunResult", "UnsupportedOperator", "get_format",
]
