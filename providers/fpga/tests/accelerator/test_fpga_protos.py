"""The committed descriptor sets are what grpcio-tools compiles from the committed .proto files."""

from __future__ import annotations

from importlib import resources

import pytest

from aml_provider_fpga.accelerator.protos.__main__ import PROTOS, compile_descriptor_set


@pytest.mark.parametrize("name", PROTOS)
def test_committed_descriptor_set_matches_its_proto(name, tmp_path):
    folder = resources.files("aml_provider_fpga.accelerator.protos")
    fresh = tmp_path / "fresh.binpb"
    with resources.as_file(folder / name) as source:
        compile_descriptor_set(source, fresh)
    committed = (folder / name.replace(".proto", ".binpb")).read_bytes()
    assert fresh.read_bytes() == committed, (
        f"{name} changed: run `python -m aml_provider_fpga.accelerator.protos` and commit the .binpb")
