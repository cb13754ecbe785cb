"""``python -m aml_core.frontdoor --host H --port P --admin-token-file F``: serve the front door.

Routes come only through the admin API here; on a Kubernetes cluster the AKS provider's host
(``python -m aml_provider_aks.frontdoor_host``) serves the same front door fed from the cluster.
"""

from __future__ import annotations

import argparse
import sys

from aml_core.frontdoor import standalone


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m aml_core.frontdoor",
                                     description="Serve the front door (router before scoring services).")
    standalone.add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        token = standalone.admin_token(args)
    except standalone.UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    from aml_core.frontdoor import FrontDoor

    sock = standalone.listen(args.host, args.port)
    print(f"front door listening on {args.host}:{sock.getsockname()[1]}", flush=True)
    standalone.serve(FrontDoor(token), sock)
    return 0


if __name__ == "__main__":
    sys.exit(main())
