"""Raw-request mode for ``score.py``: ``@rawhttp``, ``AMLRequest`` and ``AMLResponse``.

These mirror ``azureml.contrib.services.aml_request`` / ``aml_response`` (which wrap Flask in
``azureml-inference-server-http``) without depending on Flask:

* ``@rawhttp`` marks ``run()`` so it receives the request object instead of the body string;
* :class:`AMLRequest` offers the parts of Flask's request API that scoring scripts use:
  ``method``, ``headers`` (case-insensitive), ``get_data()``/``data``, ``args`` (with
  ``getlist``), ``path``, ``full_path``, ``query_string``, ``get_json()``/``json``,
  ``mimetype``, ``content_type``, ``form`` and ``files`` (multipart and url-encoded bodies);
* :class:`AMLResponse` is returned as-is: ``AMLResponse(message, status_code,
  response_headers={}, json_str=False)``.
"""

from __future__ import annotations

import email.parser
import email.policy
import json
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from urllib.parse import parse_qsl

#: set by :func:`rawhttp` at import time of the entry script; the loader resets it before
#: importing a script and reads it afterwards (the same process-global flag the Azure
#: server uses, so wrappers that hide the function attribute still work)
_raw_http_requested = False

RAW_HTTP_ATTR = "__aml_rawhttp__"


def rawhttp(func: Callable) -> Callable:
    """Ask the server to call ``run(request)`` with an :class:`AMLRequest` (raw HTTP access)."""
    global _raw_http_requested
    _raw_http_requested = True
    try:
        setattr(func, RAW_HTTP_ATTR, True)
    except (AttributeError, TypeError):  # a builtin or a frozen callable: the flag suffices
        pass
    return func


class MultiDict(dict):
    """A dict of first values that also remembers every value of a repeated key.

    ``d[key]`` and ``d.get(key)`` give the first value (as Werkzeug's ``MultiDict``);
    ``d.getlist(key)`` gives all of them.
    """

    def __init__(self, pairs: Iterable[tuple[str, Any]] = ()) -> None:
        super().__init__()
        self._lists: dict[str, list[Any]] = {}
        for key, value in pairs:
            self.add(key, value)

    def add(self, key: str, value: Any) -> None:
        values = self._lists.setdefault(key, [])
        values.append(value)
        if len(values) == 1:
            dict.__setitem__(self, key, value)

    def getlist(self, key: str, type: Callable | None = None) -> list[Any]:
        values = list(self._lists.get(key, ()))
        if type is None:
            return values
        converted = []
        for value in values:
            try:
                converted.append(type(value))
            except (ValueError, TypeError):
                continue
        return converted

    def lists(self) -> Iterator[tuple[str, list[Any]]]:
        for key, values in self._lists.items():
            yield key, list(values)

    def to_dict(self, flat: bool = True) -> dict[str, Any]:
        if flat:
            return dict(self)
        return {key: list(values) for key, values in self._lists.items()}


class Headers:
    """Case-insensitive, read-only request headers (repeated headers joined with ``", "``)."""

    __slots__ = ("_index", "_items")

    def __init__(self, raw: Iterable[tuple[bytes, bytes]]) -> None:
        self._items: list[tuple[str, str]] = []
        self._index: dict[str, str] = {}
        for name, value in raw:
            key = name.decode("latin-1").title()
            text = value.decode("latin-1")
            self._items.append((key, text))
            lower = key.lower()
            if lower in self._index:
                self._index[lower] = f"{self._index[lower]}, {text}"
            else:
                self._index[lower] = text

    def get(self, name: str, default: Any = None, type: Callable | None = None) -> Any:
        value = self._index.get(name.lower())
        if value is None:
            return default
        if type is not None:
            try:
                return type(value)
            except (ValueError, TypeError):
                return default
        return value

    def getlist(self, name: str) -> list[str]:
        lower = name.lower()
        return [value for key, value in self._items if key.lower() == lower]

    def __getitem__(self, name: str) -> str:
        return self._index[name.lower()]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._index

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def keys(self) -> list[str]:
        return [key for key, _ in self._items]

    def items(self) -> list[tuple[str, str]]:
        return list(self._items)

    def to_dict(self) -> dict[str, str]:
        """Title-cased names to values, as ``dict(flask.request.headers)`` gives."""
        return {key.title(): value for key, value in self._index.items()}

    def __repr__(self) -> str:
        return f"Headers({self._items!r})"


class FileStorage:
    """One uploaded file of a multipart body (the part of Werkzeug's API scripts use)."""

    def __init__(self, data: bytes, filename: str | None, name: str, content_type: str | None):
        self._data = data
        self.filename = filename
        self.name = name
        self.content_type = content_type
        self.mimetype = (content_type or "").split(";")[0].strip().lower()
        self._pos = 0

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            chunk = self._data[self._pos :]
        else:
            chunk = self._data[self._pos : self._pos + size]
        self._pos += len(chunk)
        return chunk

    @property
    def stream(self) -> FileStorage:
        return self

    def save(self, dst: Any) -> None:
        if hasattr(dst, "write"):
            dst.write(self._data)
        else:
            with open(dst, "wb") as handle:
                handle.write(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        return f"<FileStorage {self.filename!r} ({self.content_type})>"


class AMLRequest:
    """The request ``run()`` receives under ``@rawhttp``."""

    def __init__(
        self,
        method: str,
        path: str,
        query_string: bytes,
        headers: Headers,
        body: bytes,
        root_path: str = "",
    ) -> None:
        self.method = method
        self.path = path
        self.query_string = query_string
        self.headers = headers
        self._body = body
        self.root_path = root_path
        self._args: MultiDict | None = None
        self._form: MultiDict | None = None
        self._files: MultiDict | None = None

    # --- Flask-compatible accessors -----------------------------------------------------
    def get_data(self, cache: bool = True, as_text: bool = False, parse_form_data: bool = False):
        """The body as bytes (or text with ``as_text=True``), like Flask's ``get_data``."""
        if as_text:
            return self._body.decode("utf-8", "replace")
        return self._body

    @property
    def data(self) -> bytes:
        return self._body

    @property
    def args(self) -> MultiDict:
        if self._args is None:
            query = self.query_string.decode("latin-1")
            self._args = MultiDict(parse_qsl(query, keep_blank_values=True))
        return self._args

    @property
    def full_path(self) -> str:
        """Path and query string, always with the ``?`` (as Werkzeug builds it)."""
        return f"{self.path}?{self.query_string.decode('latin-1')}"

    @property
    def url(self) -> str:
        host = self.headers.get("host", "localhost")
        query = self.query_string.decode("latin-1")
        return f"http://{host}{self.path}" + (f"?{query}" if query else "")

    @property
    def content_type(self) -> str | None:
        return self.headers.get("content-type")

    @property
    def mimetype(self) -> str:
        return (self.content_type or "").split(";")[0].strip().lower()

    @property
    def content_length(self) -> int | None:
        return self.headers.get("content-length", type=int)

    @property
    def is_json(self) -> bool:
        return is_json_mimetype(self.mimetype)

    def get_json(self, force: bool = False, silent: bool = False, cache: bool = True) -> Any:
        if not (force or self.is_json):
            if silent:
                return None
            raise ValueError("Expected a JSON body (Content-Type: application/json)")
        try:
            return json.loads(self._body)
        except ValueError:
            if silent:
                return None
            raise

    @property
    def json(self) -> Any:
        return self.get_json()

    @property
    def form(self) -> MultiDict:
        self._parse_form()
        assert self._form is not None
        return self._form

    @property
    def files(self) -> MultiDict:
        self._parse_form()
        assert self._files is not None
        return self._files

    @property
    def values(self) -> MultiDict:
        merged = MultiDict()
        for source in (self.args, self.form):
            for key, values in source.lists():
                for value in values:
                    merged.add(key, value)
        return merged

    def _parse_form(self) -> None:
        if self._form is not None:
            return
        self._form, self._files = MultiDict(), MultiDict()
        if self.mimetype == "application/x-www-form-urlencoded":
            for key, value in parse_qsl(self._body.decode("latin-1"), keep_blank_values=True):
                self._form.add(key, value)
        elif self.mimetype == "multipart/form-data":
            _parse_multipart(self.content_type or "", self._body, self._form, self._files)

    def __repr__(self) -> str:
        return f"<AMLRequest {self.method} {self.full_path!r}>"


def is_json_mimetype(mimetype: str) -> bool:
    """Flask's rule: ``application/json`` or ``application/*+json``."""
    return mimetype == "application/json" or (
        mimetype.startswith("application/") and mimetype.endswith("+json")
    )


def _parse_multipart(content_type: str, body: bytes, form: MultiDict, files: MultiDict) -> None:
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode("latin-1")
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
    if not message.is_multipart():
        return
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if name is None:
            continue
        filename = part.get_filename()
        payload = part.get_payload(decode=True) or b""
        if filename is not None:
            files.add(name, FileStorage(payload, filename, name, part.get("content-type")))
            continue
        charset = part.get_content_charset() or "utf-8"
        form.add(name, payload.decode(charset, "replace"))


class AMLResponse:
    """A response ``run()`` returns to control status, headers and body itself.

    :param message: ``str`` or ``bytes`` sent as-is; with ``json_str=True`` any JSON value,
        serialised; ``None`` sends ``{}``.
    :param status_code: the HTTP status.
    :param response_headers: extra headers; a value with commas becomes repeated headers.
    :param json_str: serialise ``message`` as JSON and send ``application/json``.
    """

    def __init__(
        self,
        message: Any,
        status_code: int,
        response_headers: dict[str, Any] | None = None,
        json_str: bool = False,
        run_function_failed: bool = False,
    ) -> None:
        response_headers = response_headers or {}
        self.status_code = int(status_code)
        self.headers: list[tuple[str, str]] = []
        content_type = "text/html; charset=utf-8"
        if message is None:
            body = b"{}"
            content_type = "application/json"
        elif json_str:
            body = json.dumps(message).encode("utf-8")
            content_type = "application/json"
        elif isinstance(message, (bytes, bytearray, memoryview)):
            body = bytes(message)
        else:
            body = str(message).encode("utf-8")
        self.body = body
        user_sets_type = any(name.lower() == "content-type" for name in response_headers)
        if not user_sets_type or json_str or message is None:
            self.headers.append(("Content-Type", content_type))
        self.run_function_failed = bool(run_function_failed)
        for name, value in response_headers.items():
            if (json_str or message is None) and name.lower() == "content-type":
                continue
            for part in str(value).split(","):
                self.headers.append((str(name), part.strip()))

    def get_data(self, as_text: bool = False):
        return self.body.decode("utf-8", "replace") if as_text else self.body

    @property
    def data(self) -> bytes:
        return self.body

    @property
    def status(self) -> str:
        return str(self.status_code)

    def __repr__(self) -> str:
        return f"<AMLResponse {self.status_code} ({len(self.body)} bytes)>"
