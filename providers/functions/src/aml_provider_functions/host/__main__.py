"""``python -m aml_provider_functions.host --host H --port P``: load the app, start its trigger
listeners, serve HTTP until stopped. A function that cannot load stops the host with its
reason (exit 3), as the Functions host reports a broken app."""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys

from aml_provider_functions.host.app import FunctionLoadError, load_app
from aml_provider_functions.packaging import SCRIPT_ROOT

EXIT_LOAD_FAILED = 3


def host_id(environ: dict[str, str]) -> str:
    """The host id of the real host: the site name, lower case, at most 32 characters."""
    site = environ.get("WEBSITE_SITE_NAME") or "localhost"
    return re.sub(r"[^a-z0-9-]", "", site.lower())[:32].rstrip("-") or "localhost"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m aml_provider_functions.host")
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=80)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stdout,
                        format="%(asctime)s %(levelname)s [%(name)s] %(message)s")
    # the storage and Service Bus SDKs log every HTTP call at INFO: only their warnings matter here
    for noisy in ("azure", "uamqp"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    log = logging.getLogger("aml.functions.host")
    root = os.environ.get("AzureWebJobsScriptRoot", SCRIPT_ROOT)
    try:
        app = load_app(root)
    except FunctionLoadError as exc:  # with the traceback: init()'s failure is the user's to read
        log.exception("The function app cannot start: %s", exc)
        return EXIT_LOAD_FAILED
    settings = dict(os.environ)
    identity = host_id(settings)
    listeners = []
    from aml_provider_functions.host.blob import BlobTriggerListener
    from aml_provider_functions.host.servicebus import ServiceBusTriggerListener

    try:
        for function in app.functions:
            if function.disabled:
                log.info("Function 'Functions.%s' is disabled", function.name)
                continue
            kind = function.trigger["type"]
            if kind == "blobTrigger":
                listeners.append(BlobTriggerListener(function, settings, identity).start())
            elif kind == "serviceBusTrigger":
                listeners.append(ServiceBusTriggerListener(function, settings, app.host).start())
    except Exception as exc:  # a trigger's connection is missing or unreachable
        log.error("The function app cannot start: %s", exc)
        return EXIT_LOAD_FAILED
    log.info("Host started (id %s); functions: %s", identity,
             ", ".join(f"{f.name} [{f.trigger['type']}]" for f in app.functions))
    import uvicorn

    from aml_provider_functions.host.http import HostHttpApp, Keys

    try:
        uvicorn.run(HostHttpApp(app, Keys.from_environment(), identity), host=args.host, port=args.port,
                    log_level="warning", access_log=False)
    finally:
        for listener in listeners:
            listener.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
