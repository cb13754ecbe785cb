"""Key auth and TLS of the scoring server, configured from the environment.

Targets with no front door of their own (ACI, App Service) check the service key inside the
container, so it holds on any engine:

* ``AML_SCORING_KEYS_FILE``: a file with one accepted key per line (preferred: a file is not
  readable through ``/proc/<pid>/environ``), or
* ``AML_SCORING_KEYS``: the accepted keys, comma-separated (what a target that can only pass
  environment variables, like ACI's ``secureValue``, uses).

With keys set, ``/score`` answers 401 (with ``WWW-Authenticate: Bearer``) unless the request
carries ``Authorization: Bearer <one of the keys>``; ``/`` (liveness) and ``/swagger.json``
stay open, as on Azure ML. Keys are compared in constant time against every accepted key.

TLS (``ssl_enabled``): ``AML_TLS_CERT_FILE`` and ``AML_TLS_KEY_FILE`` (PEM paths), or
``AML_TLS_CERT_PEM`` and ``AML_TLS_KEY_PEM`` (the PEM text itself). The server then speaks
only HTTPS on its port.
"""

from __future__ import annotations

import hmac
import os
import ssl
import tempfile
from collections.abc import Mapping, Sequence

from aml_core.errors import InvalidConfig

KEYS_FILE_ENV = "AML_SCORING_KEYS_FILE"
KEYS_ENV = "AML_SCORING_KEYS"
TLS_CERT_FILE_ENV, TLS_KEY_FILE_ENV = "AML_TLS_CERT_FILE", "AML_TLS_KEY_FILE"
TLS_CERT_PEM_ENV, TLS_KEY_PEM_ENV = "AML_TLS_CERT_PEM", "AML_TLS_KEY_PEM"


def scoring_keys(environ: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """The accepted keys (empty: no key auth)."""
    environ = os.environ if environ is None else environ
    path = environ.get(KEYS_FILE_ENV)
    if path:
        try:
            with open(path, encoding="utf-8") as handle:
                keys = [line.strip() for line in handle]
        except OSError as exc:
            raise InvalidConfig(f"{KEYS_FILE_ENV}={path} cannot be read: {exc}") from None
    else:
        keys = [k.strip() for k in environ.get(KEYS_ENV, "").split(",")]
    keys = [k for k in keys if k]
    if (path or environ.get(KEYS_ENV)) and not keys:
        raise InvalidConfig(f"Key auth is configured ({KEYS_FILE_ENV}/{KEYS_ENV}) but names no key.")
    return tuple(keys)


class KeyCheck:
    """Does a request's ``Authorization`` header carry one of the keys? (constant time)"""

    def __init__(self, keys: Sequence[str]) -> None:
        self._keys = tuple(k.encode("utf-8") for k in keys)

    def __bool__(self) -> bool:
        return bool(self._keys)

    def __repr__(self) -> str:
        return f"KeyCheck({len(self._keys)} key(s))"

    def accepts(self, authorization: bytes | None) -> bool:
        if not authorization:
            return False
        scheme, _, presented = authorization.partition(b" ")
        if scheme.lower() != b"bearer":
            return False
        presented = presented.strip()
        matched = False
        for key in self._keys:  # no early exit: the time taken does not say which key matched
            matched |= hmac.compare_digest(presented, key)
        return matched


def tls_context(environ: Mapping[str, str] | None = None) -> ssl.SSLContext | None:
    """The server-side TLS context, or ``None`` when TLS is not configured."""
    environ = os.environ if environ is None else environ
    cert_file, key_file = environ.get(TLS_CERT_FILE_ENV), environ.get(TLS_KEY_FILE_ENV)
    cert_pem, key_pem = environ.get(TLS_CERT_PEM_ENV), environ.get(TLS_KEY_PEM_ENV)
    if not (cert_file or key_file or cert_pem or key_pem):
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        if cert_file or key_file:
            if not (cert_file and key_file):
                raise InvalidConfig(f"TLS needs both {TLS_CERT_FILE_ENV} and {TLS_KEY_FILE_ENV}.")
            context.load_cert_chain(cert_file, key_file)
        else:
            if not (cert_pem and key_pem):
                raise InvalidConfig(f"TLS needs both {TLS_CERT_PEM_ENV} and {TLS_KEY_PEM_ENV}.")
            # load_cert_chain reads files: write them to a private directory just long enough
            with tempfile.TemporaryDirectory(prefix="aml-tls-") as directory:
                cert_path, key_path = os.path.join(directory, "cert.pem"), os.path.join(directory, "key.pem")
                for path, text in ((cert_path, cert_pem), (key_path, key_pem)):
                    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                    with os.fdopen(fd, "w", encoding="utf-8") as handle:
                        handle.write(text)
                context.load_cert_chain(cert_path, key_path)
    except (ssl.SSLError, OSError) as exc:
        raise InvalidConfig(f"The TLS certificate or key cannot be loaded: {exc}. Give a PEM certificate and "
                            f"its unencrypted PEM private key.") from None
    return context
