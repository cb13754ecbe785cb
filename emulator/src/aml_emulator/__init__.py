"""The offline emulator of the cloud services the providers talk to.

``with Emulator() as emu:`` starts each service on a loopback ephemeral port; the
providers reach them over the wire with the same clients they use against Azure.
"""

from aml_emulator.emulator import Emulator

__all__ = ["Emulator"]
