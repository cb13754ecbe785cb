"""aml-provider-fpga: convert ONNX models for a Brainwave-class FPGA accelerator and score them
over gRPC with ``PredictionClient``. See docs/fpga.md."""

from aml_provider_fpga.client import PredictionClient, PredictionError
from aml_provider_fpga.converter import (
    SUPPORTED_OPERATORS,
    AccelConversion,
    AccelOnnxConverter,
)

__all__ = ["SUPPORTED_OPERATORS", "AccelConversion", "AccelOnnxConverter", "PredictionClient",
           "PredictionError"]
