"""What a target can do, declared once by its provider."""

from __future__ import annotations

import attrs


@attrs.frozen(kw_only=True)
class Capabilities:
    """Operations a target offers beyond deploy/run/status/delete, which every target has.

    The core checks these before calling a hook, so an operation a target lacks raises
    :class:`aml_core.errors.NotSupported` naming both, and the contract suite skips the
    matching tests with that reason.
    """

    #: builds an image (or staged application) from models + entry script + environment
    package: bool = True
    #: creates or attaches compute (clusters, devices, plans)
    provision: bool = False
    #: replaces code, models or settings of a running service in place
    update: bool = True
    #: returns the service's logs
    logs: bool = True
    #: key auth: ``get_keys`` and ``regen_key``
    auth_keys: bool = False
    #: token auth: ``get_token``
    auth_token: bool = False
    #: manual replica count
    scale: bool = False
    #: autoscaling between a minimum and a maximum
    autoscale: bool = False
    #: endpoints with several versions and a traffic percentage each
    traffic_split: bool = False
    #: GPU resources
    gpu: bool = False
    #: FPGA accelerators
    fpga: bool = False
    #: serves an entry script (``score.py``: ``init()``/``run()``) over HTTP; false for a
    #: target that serves converted models itself (the FPGA runtime, over gRPC)
    entry_script: bool = True

    def names(self) -> list[str]:
        """The capability names that are switched on, for display."""
        return [f.name for f in attrs.fields(type(self)) if getattr(self, f.name)]


#: Operation name -> capability flag it needs (operations not listed are always available).
OPERATION_CAPABILITY = {
    "package": "package",
    "provision": "provision",
    "update": "update",
    "logs": "logs",
    "get_keys": "auth_keys",
    "regen_key": "auth_keys",
    "get_token": "auth_token",
    "scale": "scale",
    "autoscale": "autoscale",
    "traffic": "traffic_split",
}
