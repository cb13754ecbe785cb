"""The function app as the host sees it: ``host.json``, each folder's ``function.json``, the
Python entry points, and calling one with its bindings.

A function is invoked the way the Python worker does it: ``main()``'s parameters are matched
by name to the ``in`` bindings (the trigger's value) and to the ``out`` bindings (an
``azure.functions.Out`` the function sets), ``$return`` is the return value.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Callable

import attrs

log = logging.getLogger("aml.functions.host")

TRIGGER_TYPES = ("httpTrigger", "blobTrigger", "serviceBusTrigger")


class FunctionLoadError(Exception):
    """A function's folder is not a valid function (bad function.json, missing script or entry point)."""


def _out_class() -> type:
    import azure.functions as func

    class BindingOutput(func.Out):  # type: ignore[misc,type-arg]
        def __init__(self) -> None:
            self._value: Any = None
            self.was_set = False

        def set(self, val: Any) -> None:
            self._value, self.was_set = val, True

        def get(self) -> Any:
            return self._value

    return BindingOutput


@attrs.frozen
class Function:
    name: str
    directory: Path
    bindings: tuple[dict[str, Any], ...]
    entry: Callable[..., Any]
    disabled: bool = False

    @property
    def trigger(self) -> dict[str, Any]:
        return next(b for b in self.bindings if b.get("type") in TRIGGER_TYPES)

    def outputs(self) -> list[dict[str, Any]]:
        return [b for b in self.bindings if b.get("direction") == "out" and b.get("name") != "$return"]

    def invoke(self, trigger_value: Any, reason: str) -> tuple[Any, dict[str, Any]]:
        """Call ``main()``; ``(return value, {out binding name: value set})``. Logs the host's
        Executing/Executed lines; the function's exception propagates after its log line."""
        out_type = _out_class()
        outs = {b["name"]: out_type() for b in self.outputs()}
        arguments = {self.trigger["name"]: trigger_value, **outs}
        invocation = uuid.uuid4()
        log.info("Executing 'Functions.%s' (Reason='%s', Id=%s)", self.name, reason, invocation)
        started = time.perf_counter()
        try:
            result = self.entry(**arguments)
        except Exception as exc:
            elapsed = (time.perf_counter() - started) * 1000
            log.error("Executed 'Functions.%s' (Failed, Id=%s, Duration=%.0fms): %s: %s", self.name, invocation,
                      elapsed, type(exc).__name__, exc, exc_info=True)
            raise
        elapsed = (time.perf_counter() - started) * 1000
        log.info("Executed 'Functions.%s' (Succeeded, Id=%s, Duration=%.0fms)", self.name, invocation, elapsed)
        return result, {name: out.get() for name, out in outs.items() if out.was_set}


@attrs.frozen
class FunctionApp:
    root: Path
    host: dict[str, Any]
    functions: tuple[Function, ...]

    @property
    def route_prefix(self) -> str:
        http = (self.host.get("extensions") or {}).get("http") or {}
        return str(http.get("routePrefix", "api")).strip("/")

    def by_name(self, name: str) -> Function | None:
        return next((f for f in self.functions if f.name.lower() == name.lower()), None)


def _load_entry(name: str, directory: Path, spec: dict[str, Any]) -> Callable[..., Any]:
    script = directory / str(spec.get("scriptFile") or "__init__.py")
    if not script.is_file():
        raise FunctionLoadError(f"Function {name!r}: scriptFile {script.name!r} does not exist in {directory}.")
    module_name = f"__app__.{name}" if script.name == "__init__.py" else f"__app__.{name}.{script.stem}"
    module_spec = importlib.util.spec_from_file_location(module_name, script)
    if module_spec is None or module_spec.loader is None:
        raise FunctionLoadError(f"Function {name!r}: {script} cannot be imported as Python.")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[module_name] = module
    try:
        module_spec.loader.exec_module(module)
    except Exception as exc:
        raise FunctionLoadError(f"Function {name!r}: importing {script} failed: {type(exc).__name__}: {exc}") from exc
    entry_point = str(spec.get("entryPoint") or "main")
    entry = getattr(module, entry_point, None)
    if not callable(entry):
        raise FunctionLoadError(f"Function {name!r}: {script} has no entry point {entry_point}().")
    return entry


def load_app(root: str | os.PathLike[str]) -> FunctionApp:
    """Read the app at ``root`` (``AzureWebJobsScriptRoot``)."""
    root = Path(root)
    host_file = root / "host.json"
    if not host_file.is_file():
        raise FunctionLoadError(f"{root} holds no host.json, so it is not a function app.")
    host = json.loads(host_file.read_text())
    functions = []
    for directory in sorted(p for p in root.iterdir() if (p / "function.json").is_file()):
        try:
            spec = json.loads((directory / "function.json").read_text())
        except ValueError as exc:
            raise FunctionLoadError(f"Function {directory.name!r}: function.json is not JSON: {exc}") from exc
        bindings = tuple(spec.get("bindings") or ())
        triggers = [b for b in bindings if b.get("type") in TRIGGER_TYPES]
        if len(triggers) != 1:
            raise FunctionLoadError(f"Function {directory.name!r} needs exactly one trigger binding among "
                                    f"{TRIGGER_TYPES}; function.json has {len(triggers)}.")
        if str(root) not in sys.path:
            sys.path.insert(0, str(root))
        functions.append(Function(name=directory.name, directory=directory, bindings=bindings,
                                  entry=_load_entry(directory.name, directory, spec),
                                  disabled=bool(spec.get("disabled"))))
    if not functions:
        raise FunctionLoadError(f"The function app at {root} has no function (no folder with a function.json).")
    return FunctionApp(root=root, host=host, functions=tuple(functions))
