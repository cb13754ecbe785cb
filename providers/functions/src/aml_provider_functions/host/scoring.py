"""The bridge from a function's ``main()`` to the user's ``score.py``: loaded once, ``init()``
called once (when the host loads the function: :func:`load`), ``run()`` per event with the calling
convention of the scoring runtime (a JSON string, inference-schema keyword arguments, or an
``AMLRequest`` for ``@rawhttp``)."""

from __future__ import annotations

import json
import logging
import os
import threading
from typing import Any

log = logging.getLogger("aml.functions.scoring")
_lock = threading.Lock()
_script: Any = None


class ScoringFailed(Exception):
    """``run()`` could not take the input (``status`` 400) or raised (500)."""

    def __init__(self, message: str, status: int = 500) -> None:
        super().__init__(message)
        self.status = status


def load() -> Any:
    """The user's script, imported and ``init()`` called the first time (once per host)."""
    global _script
    with _lock:
        if _script is None:
            from aml_core.runtime.config import from_environment, search_path
            from aml_core.runtime.script import load_script

            config = from_environment()
            if config["model_dir"]:
                os.environ.setdefault("AZUREML_MODEL_DIR", config["model_dir"])
            script = load_script(config["entry_script"], search_path(config))
            log.info("Calling init() of %s", config["entry_script"])
            script.init()
            _script = script
    return _script


def _encode(result: Any) -> str:
    return result if isinstance(result, str) else json.dumps(result, default=str)


def _call(arguments: dict[str, Any]) -> str:
    script = load()
    try:
        return _encode(script.run(**arguments))
    except Exception as exc:  # the user's code failed: the trigger decides what that means
        raise ScoringFailed(f"run() raised {type(exc).__name__}: {exc}") from exc


def _arguments(text: str, method: str = "POST", body: bytes = b"", params: dict[str, str] | None = None,
               headers: dict[str, str] | None = None) -> dict[str, Any]:
    script = load()
    if script.mode == "raw":
        from aml_core.runtime.raw import AMLRequest, Headers
        from urllib.parse import urlencode

        raw_headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()]
        request = AMLRequest(method, "/score", urlencode(params or {}).encode(), Headers(raw_headers),
                             body or text.encode(), "")
        return {script.data_param: request}
    if script.mode == "schema":
        try:
            document = json.loads(text)
        except ValueError as exc:
            raise ScoringFailed(f"The input could not be decoded as JSON: {exc}", status=400) from None
        if not isinstance(document, dict):
            raise ScoringFailed("The input should be a JSON dictionary.", status=400)
        arguments = {}
        for param in script.schema_params:
            value = document.get(param.name, param.default)
            if value is param.empty:
                raise ScoringFailed(f"A value is not provided for the {param.name!r} parameter.", status=400)
            arguments[param.name] = value
        return arguments
    return {script.data_param: text}


def score_text(data: bytes | str) -> str:
    """``run()`` on one event's payload (a blob's content, a message's body); its result as text."""
    text = data.decode("utf-8") if isinstance(data, bytes) else data
    return _call(_arguments(text))


def score_http(method: str, body: bytes, params: dict[str, str], headers: dict[str, str]) -> tuple[int, str]:
    """``run()`` on an HTTP request: the body of a POST, the query of a GET (as the scoring server)."""
    if method.upper() == "POST":
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ScoringFailed(f"Input cannot be decoded as UTF-8: {exc}", status=400) from None
    else:
        text = json.dumps(params)
    return 200, _call(_arguments(text, method.upper(), body, params, headers))
