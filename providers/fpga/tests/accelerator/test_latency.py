"""The analytic latency model, by hand."""

from __future__ import annotations

import pytest

from aml_provider_fpga.accelerator import AcceleratorPart
from aml_provider_fpga.accelerator.latency import LayerCost


def test_cycles_per_layer_and_transfer_by_hand():
    part = AcceleratorPart(name="toy", clock_hz=100e6, macs_per_cycle=1000, vector_lanes=10,
                           host_link_bytes_per_second=1e9, layer_overhead_cycles=5)
    layers = [LayerCost("conv", "Conv", macs=10_500, vector_elements=95),
              LayerCost("relu", "Relu", vector_elements=100)]
    report = part.estimate(layers, transfer_bytes=4000)
    # conv: ceil(10500/1000)=11 + ceil(95/10)=10 + 5; relu: 0 + 10 + 5 -> 41 cycles at 100 MHz
    assert report.compute_seconds == pytest.approx(41 / 100e6)
    assert report.transfer_seconds == pytest.approx(4e-6)
    assert report.total_seconds == pytest.approx(41e-8 + 4e-6)
    assert report.macs == 10_500


def test_a_part_must_have_positive_throughput():
    with pytest.raises(ValueError):
        AcceleratorPart(name="broken", clock_hz=0, macs_per_cycle=1, vector_lanes=1,
                        host_link_bytes_per_second=1)
