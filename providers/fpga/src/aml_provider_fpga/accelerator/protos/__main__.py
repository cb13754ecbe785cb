"""Regenerate the descriptor sets: ``python -m aml_provider_fpga.accelerator.protos`` (needs grpcio-tools)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

PROTOS = ("open_inference_v2.proto", "tfserving_predict.proto")


def compile_descriptor_set(source: Path, destination: Path) -> None:
    """Compile one .proto (with the well-known types it imports) into a descriptor set."""
    from grpc_tools import protoc

    include = resources.files("grpc_tools") / "_proto"
    status = protoc.main(["grpc_tools.protoc", f"-I{source.parent}", f"-I{include}",
                          "--include_imports", f"--descriptor_set_out={destination}",
                          str(source)])
    if status != 0:
        raise SystemExit(f"protoc failed on {source.name} (exit {status})")


if __name__ == "__main__":
    here = Path(__file__).parent
    for name in PROTOS:
        compile_descriptor_set(here / name, here / name.replace(".proto", ".binpb"))
