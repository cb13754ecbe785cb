"""``aml iot ...``: talk to an emulated IoT hub from the shell, given its connection string.

- ``aml iot add-edge-device DEVICE``: run an emulated IoT Edge device (created if needed);
- ``aml iot monitor-events``: print device-to-cloud messages as JSON lines, modelled on
  ``az iot hub monitor-events`` (``--from`` a sequence number, ``--timeout`` seconds to wait
  for more, ``--device``/``--module`` to filter).

The connection string (a shared access policy's, e.g. ``iothubowner``) comes from
``--hub-connection-string`` or ``$AML_IOTHUB_CONNECTION_STRING``; the CA to trust from
``--ca-bundle`` or ``$REQUESTS_CA_BUNDLE``.
"""

from __future__ import annotations

import json
import time

import click
import requests

from aml_emulator.iothub import auth


def _parse(connection_string: str) -> dict[str, str]:
    fields = dict(part.split("=", 1) for part in connection_string.split(";") if "=" in part)
    missing = [k for k in ("HostName", "SharedAccessKeyName", "SharedAccessKey") if k not in fields]
    if missing:
        raise click.UsageError(f"the hub connection string lacks {', '.join(missing)}; use a shared access "
                               f"policy's connection string (HostName=...;SharedAccessKeyName=...;SharedAccessKey=...)")
    return fields


def _session(connection_string: str, ca_bundle: str | None) -> tuple[requests.Session, str]:
    fields = _parse(connection_string)
    session = requests.Session()
    session.headers["Authorization"] = auth.service_token(fields["HostName"], fields["SharedAccessKeyName"],
                                                          fields["SharedAccessKey"])
    if ca_bundle:
        session.verify = ca_bundle
    return session, f"https://{fields['HostName']}"


def _check(response: requests.Response) -> dict:
    if response.status_code >= 400:
        raise click.ClickException(f"the hub answered {response.status_code}: {response.text[:500]}")
    return response.json()


hub_option = click.option("--hub-connection-string", "connection_string", envvar="AML_IOTHUB_CONNECTION_STRING",
                          required=True, help="A shared access policy's connection string ($AML_IOTHUB_CONNECTION_STRING).")
ca_option = click.option("--ca-bundle", envvar="REQUESTS_CA_BUNDLE", default=None,
                         help="The emulator's CA certificate ($REQUESTS_CA_BUNDLE).")


@click.group("iot")
def iot() -> None:
    """Work with an emulated IoT hub: edge devices and device-to-cloud messages."""


@iot.command("add-edge-device")
@click.argument("device_id")
@hub_option
@ca_option
def add_edge_device(device_id: str, connection_string: str, ca_bundle: str | None) -> None:
    """Run an emulated IoT Edge device DEVICE_ID (registered as an edge device if new)."""
    session, base = _session(connection_string, ca_bundle)
    answer = _check(session.put(f"{base}/_emulator/edgeDevices/{device_id}", params={"api-version": "2021-04-12"}))
    click.echo(f"Edge device {answer['deviceId']} runs; its modules reach the edge hub at "
               f"{answer['gatewayHostName']}:8883.")


@iot.command("monitor-events")
@hub_option
@ca_option
@click.option("--from", "start", type=int, default=0, show_default=True, help="First sequence number to print.")
@click.option("--timeout", type=float, default=0.0, show_default=True,
              help="Seconds to keep waiting for new messages (0: print what is there and stop).")
@click.option("--device", "device_id", default=None, help="Only messages from this device.")
@click.option("--module", "module_id", default=None, help="Only messages from this module.")
def monitor_events(connection_string: str, ca_bundle: str | None, start: int, timeout: float,
                   device_id: str | None, module_id: str | None) -> None:
    """Print device-to-cloud messages as JSON lines (sequenceNumber, deviceId, moduleId, body, properties)."""
    session, base = _session(connection_string, ca_bundle)
    deadline = time.monotonic() + timeout
    position = start
    while True:
        wait = max(0.0, min(10.0, deadline - time.monotonic()))
        events = _check(session.get(f"{base}/_emulator/events", params={"from": position, "timeout": wait}))
        for event in events:
            position = event["sequenceNumber"] + 1
            if device_id and event["deviceId"] != device_id:
                continue
            if module_id and event.get("moduleId") != module_id:
                continue
            click.echo(json.dumps(event))
        if time.monotonic() >= deadline:
            return
