"""Serve converted models on the emulated accelerator: the FPGA image's entrypoint.

``python -m aml_provider_fpga.accelerator MODEL_DIR [MODEL_DIR ...] [--host H] [--port P]``

Keys come from ``AML_SCORING_KEYS_FILE`` / ``AML_SCORING_KEYS`` (as for the HTTP scoring
server); TLS from ``AML_TLS_CERT_FILE`` and ``AML_TLS_KEY_FILE``. ``AML_FPGA_MODEL_DIRS``
(os.pathsep-separated) may name the folders instead of arguments. The port defaults to
``AML_FPGA_PORT`` or 5001.
"""

from __future__ import annotations

import argparse
import os
import sys

import grpc

from aml_core.runtime.security import TLS_CERT_FILE_ENV, TLS_KEY_FILE_ENV, scoring_keys

from .server import AcceleratorServer, load_package


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m aml_provider_fpga.accelerator", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_dirs", nargs="*")
    parser.add_argument("--host", default=os.environ.get("AML_FPGA_HOST", "0.0.0.0"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("AML_FPGA_PORT", 5001)))
    args = parser.parse_args(argv)
    dirs = args.model_dirs or [d for d in os.environ.get("AML_FPGA_MODEL_DIRS", "").split(
        os.pathsep) if d]
    if not dirs:
        parser.error("name at least one converted model folder (or set AML_FPGA_MODEL_DIRS)")
    credentials = None
    cert, key = os.environ.get(TLS_CERT_FILE_ENV), os.environ.get(TLS_KEY_FILE_ENV)
    if cert and key:
        with open(cert, "rb") as c, open(key, "rb") as k:
            credentials = grpc.ssl_server_credentials([(k.read(), c.read())])
    server = AcceleratorServer(host=args.host, port=args.port, keys=scoring_keys(),
                               credentials=credentials)
    for directory in dirs:
        server.add_model(load_package(directory))
    server.start()
    print(f"accelerator serving {len(dirs)} model(s) on {server.address}", flush=True)
    server.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
