"""Media types and digests of the OCI image and distribution specs.

Digests are always ``sha256:<64 lowercase hex>``; :func:`check_digest` is the one gate a
digest passes before it is used in a URL or as a file name (fidelity S11).
"""

from __future__ import annotations

import hashlib
import re

from aml_core.errors import InvalidConfig

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"

MANIFEST_TYPES = (OCI_MANIFEST, DOCKER_MANIFEST)
INDEX_TYPES = (OCI_INDEX, DOCKER_MANIFEST_LIST)
#: what a client sends in ``Accept`` when it fetches a manifest
MANIFEST_ACCEPT = ", ".join(MANIFEST_TYPES + INDEX_TYPES)
GZIP_LAYER_TYPES = (OCI_LAYER_GZIP, DOCKER_LAYER_GZIP)

_DIGEST = re.compile(r"sha256:[a-f0-9]{64}")


def sha256_digest(data: bytes) -> str:
    """The ``sha256:<hex>`` digest of ``data``."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def check_digest(digest: str) -> str:
    """Return ``digest`` if it is a well-formed sha256 digest, else raise InvalidConfig."""
    if not isinstance(digest, str) or not _DIGEST.fullmatch(digest):
        raise InvalidConfig(
            f"{digest!r} is not a sha256 digest; expected 'sha256:' and 64 lowercase hex digits."
        )
    return digest


def digest_hex(digest: str) -> str:
    """The hex part of a checked digest (safe to use as a file name)."""
    return check_digest(digest).split(":", 1)[1]
