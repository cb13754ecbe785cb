"""The client's copy of the Predict protocol is the accelerator's, compiled by grpcio-tools."""

from __future__ import annotations

from importlib import resources

from aml_provider_fpga.accelerator.protos.__main__ import compile_descriptor_set


def test_the_client_carries_the_same_proto_and_a_fresh_descriptor_set(tmp_path):
    client = resources.files("aml_provider_fpga.protos")
    server = resources.files("aml_provider_fpga.accelerator.protos")
    assert (client / "tfserving_predict.proto").read_bytes() == \
        (server / "tfserving_predict.proto").read_bytes()
    fresh = tmp_path / "fresh.binpb"
    with resources.as_file(client / "tfserving_predict.proto") as source:
        compile_descriptor_set(source, fresh)
    assert fresh.read_bytes() == (client / "tfserving_predict.binpb").read_bytes()
