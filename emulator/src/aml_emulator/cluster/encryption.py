"""Encryption at rest for the cluster's Secrets, as the apiserver's ``aesgcm`` provider does.

A real cluster keeps Secrets in etcd apart from nothing but its ``EncryptionConfiguration``;
here the store writes every Secret to its own file, ``cluster-secrets.enc``, sealed with
AES-256-GCM (``cryptography``'s AEAD) under a key file. The sealed bytes carry the same
kind of prefix the apiserver writes (``k8s:enc:aesgcm:v1:<key name>:``), so a file sealed
with another key, or damaged, is told apart from a wrong key by name.

The default key file sits in the cluster's state directory (mode 0600): that keeps Secrets
out of the plain object file, its copies and its backups, but not from someone who can read
the whole state directory as this user. Keep the key elsewhere (``encryption_key_file=``)
for that.
"""

from __future__ import annotations

import base64
import binascii
import os
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from aml_core.secure_files import private_dir, write_private

KEY_NAME = "key1"
PREFIX = f"k8s:enc:aesgcm:v1:{KEY_NAME}:".encode()
_NONCE_BYTES = 12
#: binds a sealed file to its purpose: bytes sealed for something else do not open here
_ASSOCIATED_DATA = b"aml-emulator/cluster-secrets"


class EncryptionError(RuntimeError):
    """The Secrets file cannot be opened with this key: name the file and what to do."""


class SecretsCipher:
    """AES-256-GCM with a random 96-bit nonce per write, keyed from a base64 key file."""

    def __init__(self, key: bytes, key_file: Path) -> None:
        if len(key) != 32:
            raise EncryptionError(f"{key_file} must hold a base64 32-byte key (it holds {len(key)} bytes); "
                                  f"generate one with `head -c 32 /dev/urandom | base64`.")
        self._aead = AESGCM(key)
        self.key_file = key_file

    @classmethod
    def load_or_create(cls, key_file: str | Path) -> "SecretsCipher":
        key_file = Path(key_file)
        if key_file.exists():
            try:
                key = base64.b64decode(key_file.read_bytes().strip(), validate=True)
            except (binascii.Error, ValueError):
                raise EncryptionError(f"{key_file} is not base64; restore the key file, or generate one "
                                      f"with `head -c 32 /dev/urandom | base64`.") from None
            return cls(key, key_file)
        private_dir(key_file.parent, tighten=False)
        key = AESGCM.generate_key(bit_length=256)
        write_private(key_file, base64.b64encode(key) + b"\n")
        return cls(key, key_file)

    def seal(self, plaintext: bytes) -> bytes:
        nonce = os.urandom(_NONCE_BYTES)
        return PREFIX + nonce + self._aead.encrypt(nonce, plaintext, _ASSOCIATED_DATA)

    def open(self, sealed: bytes, source: Path) -> bytes:
        if not sealed.startswith(PREFIX):
            raise EncryptionError(f"{source} was not sealed by this emulator's aesgcm provider "
                                  f"(expected the prefix {PREFIX.decode()!r}); restore it from a backup, "
                                  f"or delete it to start with no Secrets.")
        body = sealed[len(PREFIX):]
        try:
            return self._aead.decrypt(body[:_NONCE_BYTES], body[_NONCE_BYTES:], _ASSOCIATED_DATA)
        except InvalidTag:
            raise EncryptionError(f"{source} does not open with the key in {self.key_file}: the key is not "
                                  f"the one it was sealed with, or the file is damaged. Point "
                                  f"encryption_key_file at the right key, or delete {source.name} to start "
                                  f"with no Secrets.") from None
