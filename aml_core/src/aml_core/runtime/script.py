"""Load a user's entry script (``score.py``) and decide how ``run()`` is called.

The rules follow ``azureml-inference-server-http``:

* the script must define ``init()`` and ``run()``; a ``driver_module`` attribute that is a
  module with its own ``run`` is called instead (generated driver scripts);
* ``run()`` takes no ``*args``, ``**kwargs`` or positional-only parameters and at least one
  data parameter; an optional ``request_headers`` parameter receives the request headers;
* ``@rawhttp`` passes an :class:`~aml_core.runtime.raw.AMLRequest` as the first parameter;
  inference-schema's ``@input_schema`` passes the JSON body's keys as keyword arguments; an
  undecorated ``run()`` gets the body as a string. ``@rawhttp`` with ``@input_schema`` is an error.
"""

from __future__ import annotations

import importlib.util
import inspect
import os
import sys
import types
from collections.abc import Callable, Iterator

from aml_core.runtime import raw as _http

#: process exit status when the script cannot be loaded or ``init()`` fails (as the Azure server)
EXIT_SCRIPT_FAILED = 3
MODEL_TREE_LINE_LIMIT = 200


class ScriptError(Exception):
    """The entry script cannot serve: it is missing, fails to import, or lacks init()/run()."""


class UserScript:
    """A loaded entry script and the calling convention of its ``run()``."""

    def __init__(self, module: types.ModuleType, init: Callable, run: Callable) -> None:
        self.module = module
        self.init = init
        self.run = run
        self.mode = "json"  # "json" | "raw" | "schema"
        self.data_param = ""
        self.schema_params: list[inspect.Parameter] = []
        self.wants_headers = False
        self._analyse()

    def _analyse(self) -> None:
        try:
            params = list(inspect.signature(self.run).parameters.values())
        except (TypeError, ValueError) as exc:
            raise ScriptError(f"Cannot inspect the signature of run(): {exc}") from exc
        allowed = (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
        if any(param.kind not in allowed for param in params):
            raise ScriptError("run() cannot accept positional-only arguments, *args, or **kwargs.")
        self.wants_headers = any(param.name == "request_headers" for param in params)
        data_params = [param for param in params if param.name != "request_headers"]
        if not data_params:
            if self.wants_headers:
                raise ScriptError('run() needs to accept an argument other than "request_headers".')
            raise ScriptError("run() needs to accept an argument for input data.")
        self.data_param = data_params[0].name
        raw = _raw_requested(self.run)
        schema = is_schema_decorated(self.run)
        if raw and schema:
            raise ScriptError("run() cannot be decorated with both @rawhttp and @input_schema")
        if raw:
            self.mode = "raw"
        elif schema:
            self.mode = "schema"
            self.schema_params = data_params

    def describe(self) -> str:
        if self.mode == "raw":
            return "run() is decorated with @rawhttp: it is called with the raw request."
        if self.mode == "schema":
            names = ", ".join(param.name for param in self.schema_params)
            return (
                f"run() is decorated with @input_schema: it is called with the arguments {names}."
            )
        return "run() is not decorated: it is called with the request body as a string."


def _raw_requested(run: Callable) -> bool:
    if getattr(run, _http.RAW_HTTP_ATTR, False) or _http._raw_http_requested:
        return True
    # A script may use the real azureml.contrib.services (Flask based) when it is installed.
    real = sys.modules.get("azureml_inference_server_http.api.aml_request")
    return bool(real is not None and getattr(real, "_rawHttpRequested", False))


def is_schema_decorated(func: Callable) -> bool:
    """True when inference-schema's decorators wrap ``func`` (False if it is not installed)."""
    try:
        from inference_schema.schema_util import is_schema_decorated as _decorated
    except ImportError:
        return False
    try:
        return bool(_decorated(func))
    except Exception:  # noqa: BLE001 - inference-schema probes attributes
        return False


# --- azureml.contrib.services aliases --------------------------------------------------------

_ALIASES = {
    "azureml.contrib.services.aml_request": {"rawhttp": "rawhttp", "AMLRequest": "AMLRequest"},
    "azureml.contrib.services.aml_response": {"AMLResponse": "AMLResponse"},
    "azureml_inference_server_http.api.aml_request": {
        "rawhttp": "rawhttp",
        "AMLRequest": "AMLRequest",
    },
    "azureml_inference_server_http.api.aml_response": {"AMLResponse": "AMLResponse"},
}


def install_azureml_aliases() -> list[str]:
    """Make ``from azureml.contrib.services.aml_request import rawhttp`` work without Azure.

    Only modules that cannot be imported for real are aliased, and only in this process (the
    scoring worker). Returns the names of the modules that were installed.
    """
    installed = []
    for dotted, names in _ALIASES.items():
        if _importable(dotted):
            continue
        module = types.ModuleType(dotted, f"aml_core alias of {dotted} (raw-request mode)")
        for public, ours in names.items():
            setattr(module, public, getattr(_http, ours))
        _ensure_parents(dotted)
        sys.modules[dotted] = module
        parent, _, leaf = dotted.rpartition(".")
        setattr(sys.modules[parent], leaf, module)
        installed.append(dotted)
    return installed


def _importable(dotted: str) -> bool:
    if dotted in sys.modules:
        return True
    try:
        return importlib.util.find_spec(dotted) is not None
    except (ImportError, ValueError, AttributeError):
        return False


def _ensure_parents(dotted: str) -> None:
    parts = dotted.split(".")
    for depth in range(1, len(parts)):
        name = ".".join(parts[:depth])
        if name in sys.modules:
            continue
        try:
            importlib.import_module(name)
            continue
        except ImportError:
            pass
        package = types.ModuleType(name, "aml_core alias package")
        package.__path__ = []  # a package, so submodule imports resolve through sys.modules
        sys.modules[name] = package
        if depth > 1:
            setattr(sys.modules[".".join(parts[: depth - 1])], parts[depth - 1], package)


# --- loading -----------------------------------------------------------------------------------


def load_script(entry_script: str | None, search_path: list[str]) -> UserScript:
    """Import the entry script (a file path, or the module ``main`` when ``None``).

    :param search_path: directories put in front of ``sys.path`` first (source directory, the
        script's own directory, the app root) so the script's sibling modules import.
    :raises ScriptError: the script is missing, raises on import, or lacks init()/run().
    """
    for directory in reversed([d for d in search_path if d]):
        if directory not in sys.path:
            sys.path.insert(0, directory)
    _http._raw_http_requested = False
    if entry_script:
        if not os.path.isfile(entry_script):
            raise ScriptError(f"The entry script {entry_script} does not exist (no such file).")
        spec = importlib.util.spec_from_file_location("entry_module", entry_script)
        if spec is None or spec.loader is None:
            raise ScriptError(f"The entry script {entry_script} cannot be imported as Python.")
        module = importlib.util.module_from_spec(spec)
        sys.modules["entry_module"] = module
        try:
            # compiled from source every time: a score.py rewritten within the same second
            # (a reload) must never run from a stale __pycache__ entry
            with open(entry_script, "rb") as handle:
                code = compile(handle.read(), entry_script, "exec", dont_inherit=True)
            exec(code, module.__dict__)  # noqa: S102 - running the user's script is the point
        except BaseException as exc:
            raise ScriptError(
                f"Failed to import the entry script {entry_script}: {type(exc).__name__}: {exc}"
            ) from exc
    else:
        try:
            import main as module  # type: ignore[import-not-found]
        except BaseException as exc:
            raise ScriptError(
                "No entry script given (AZUREML_ENTRY_SCRIPT / --entry_script) and importing "
                f"main.py failed: {type(exc).__name__}: {exc}. sys.path is {sys.path}"
            ) from exc
    where = getattr(module, "__file__", entry_script or "main")
    if not hasattr(module, "init"):
        raise ScriptError(f"User script at {where} does not have a init() function defined.")
    if not hasattr(module, "run"):
        raise ScriptError(f"User script at {where} does not have a run() function defined.")
    run = module.run
    driver = getattr(module, "driver_module", None)
    if isinstance(driver, types.ModuleType) and hasattr(driver, "run"):
        run = driver.run
    return UserScript(module, module.init, run)


def model_tree(path: str, limit: int = MODEL_TREE_LINE_LIMIT) -> list[str]:
    """The model directory as an indented listing, at most ``limit`` lines (plus a note)."""
    lines: list[str] = []
    walker = _walk(os.path.normpath(path), 0)
    for line in walker:
        if len(lines) == limit:
            lines.append(f"Output truncated. First {limit} lines shown.")
            break
        lines.append(line)
    return lines


def _walk(path: str, depth: int) -> Iterator[str]:
    name = os.path.basename(path.rstrip(os.sep)) or path
    indent = "    " * depth
    if os.path.isdir(path) and not os.path.islink(path):
        yield f"{indent}{name}{os.sep}"
        try:
            children = sorted(os.listdir(path))
        except OSError as exc:
            yield f"{indent}    <unreadable: {exc.strerror}>"
            return
        for child in children:
            yield from _walk(os.path.join(path, child), depth + 1)
    else:
        yield f"{indent}{name}"


def describe_exception(exc: BaseException, limit: int = 2000) -> str:
    """``Type: message`` of an exception, shortened for headers, state files and bodies."""
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."
