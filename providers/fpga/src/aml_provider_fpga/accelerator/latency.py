"""Analytic latency model of the accelerator: what a request would take on a configured part.

The model is deliberately simple and stated in full, so a user can check it by hand:

* a dot-product layer (Conv, Gemm, MatMul) takes ``ceil(MACs / macs_per_cycle)`` cycles plus
  a fixed ``layer_overhead_cycles`` to fill the matrix-vector tile pipeline;
* a vector layer (bias, activations, pooling, add, concat, softmax) takes
  ``ceil(elements / vector_lanes)`` cycles plus the same overhead;
* cycles become seconds at ``clock_hz``;
* input and output tensors cross the host link once each, at ``host_link_bytes_per_second``.

It is a lower bound of the kind vendors quote (the tiles are assumed fully used); it is not a
cycle-accurate simulation, and ``docs/fpga.md`` says where each default comes from.
"""

from __future__ import annotations

import math

import attrs


@attrs.frozen
class LayerCost:
    """One executed node: its dot-product MACs and the elements its vector work touches."""

    node: str
    op_type: str
    macs: int = 0
    vector_elements: int = 0


@attrs.frozen
class LatencyReport:
    """The modelled device time of one request, in seconds, and its parts."""

    part: str
    compute_seconds: float
    transfer_seconds: float
    macs: int

    @property
    def total_seconds(self) -> float:
        return self.compute_seconds + self.transfer_seconds


@attrs.frozen
class AcceleratorPart:
    """A configurable accelerator part: its tile throughput, clock and host link."""

    name: str
    clock_hz: float = attrs.field(validator=attrs.validators.gt(0))
    macs_per_cycle: int = attrs.field(validator=attrs.validators.gt(0))
    vector_lanes: int = attrs.field(validator=attrs.validators.gt(0))
    host_link_bytes_per_second: float = attrs.field(validator=attrs.validators.gt(0))
    layer_overhead_cycles: int = attrs.field(default=0, validator=attrs.validators.ge(0))

    def estimate(self, layers: list[LayerCost], transfer_bytes: int) -> LatencyReport:
        cycles = 0
        for layer in layers:
            cycles += math.ceil(layer.macs / self.macs_per_cycle)
            cycles += math.ceil(layer.vector_elements / self.vector_lanes)
            cycles += self.layer_overhead_cycles
        return LatencyReport(
            part=self.name,
            compute_seconds=cycles / self.clock_hz,
            transfer_seconds=transfer_bytes / self.host_link_bytes_per_second,
            macs=sum(layer.macs for layer in layers),
        )


#: Brainwave on an Intel Stratix 10 280 (ISCA 2018: up to 96,000 MACs), at an assumed 250 MHz,
#: with 128-lane vector units (the paper's native vector length) and a PCIe Gen3 x8 host link
#: (7.88 GB/s). Every figure is a parameter: build an ``AcceleratorPart`` for another part.
STRATIX10_280 = AcceleratorPart(
    name="stratix10-280",
    clock_hz=250e6,
    macs_per_cycle=96_000,
    vector_lanes=128,
    host_link_bytes_per_second=7.88e9,
    layer_overhead_cycles=64,
)
