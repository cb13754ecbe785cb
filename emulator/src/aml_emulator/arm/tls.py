"""A certificate authority made at start-up, so the ARM endpoints can serve HTTPS.

azure-core refuses to send a bearer token over plain http, so the emulated Azure Resource
Manager must speak TLS. The CA is generated once per state directory and kept (its
certificate is what clients trust: ``connection_verify=<ca.pem>``); the server certificate
for the loopback names is re-issued at every start, signed by that CA.
"""

from __future__ import annotations

import datetime as _dt
import ipaddress
import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_CERT = "ca.pem"
CA_KEY = "ca-key.pem"
_CA_LIFETIME = _dt.timedelta(days=3650)
_LEAF_LIFETIME = _dt.timedelta(days=397)
_BACKDATE = _dt.timedelta(minutes=5)


def _write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to a file created with mode 0600 (never briefly world-readable)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.replace(tmp, path)


def _write_public(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


class CertificateAuthority:
    """A self-signed CA kept in ``directory`` (``ca.pem`` and the 0600 ``ca-key.pem``)."""

    def __init__(self, directory: Path, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> None:
        self.directory = directory
        self.cert = cert
        self._key = key

    @property
    def cert_path(self) -> Path:
        """The PEM file clients trust (``connection_verify``, ``REQUESTS_CA_BUNDLE``)."""
        return self.directory / CA_CERT

    @classmethod
    def load_or_create(cls, directory: str | Path) -> "CertificateAuthority":
        """Reuse the CA in ``directory`` if it is there and valid, else make a new one."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        cert_path, key_path = directory / CA_CERT, directory / CA_KEY
        if cert_path.exists() and key_path.exists():
            cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
            key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
            now = _dt.datetime.now(_dt.timezone.utc)
            if isinstance(key, ec.EllipticCurvePrivateKey) and cert.not_valid_after_utc > now + _LEAF_LIFETIME:
                return cls(directory, cert, key)
        return cls._create(directory)

    @classmethod
    def _create(cls, directory: Path) -> "CertificateAuthority":
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "aml-emulator"),
            x509.NameAttribute(NameOID.COMMON_NAME, "aml-emulator local CA"),
        ])
        now = _dt.datetime.now(_dt.timezone.utc)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _BACKDATE)
            .not_valid_after(now + _CA_LIFETIME)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True, key_cert_sign=True, crl_sign=True,
                    content_commitment=False, key_encipherment=False, data_encipherment=False,
                    key_agreement=False, encipher_only=False, decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256())
        )
        _write_private(directory / CA_KEY, _pem_key(key))
        _write_public(directory / CA_CERT, cert.public_bytes(serialization.Encoding.PEM))
        return cls(directory, cert, key)

    def issue_server_cert(self, directory: str | Path, stem: str, hosts: tuple[str, ...]) -> tuple[Path, Path]:
        """Sign a server certificate for ``hosts`` (names or IP addresses).

        Writes ``<stem>-cert.pem`` and the 0600 ``<stem>-key.pem`` in ``directory`` and
        returns their paths (certificate, key), ready for uvicorn's ``ssl_certfile``/``keyfile``.
        """
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        names: list[x509.GeneralName] = []
        for host in dict.fromkeys(hosts):
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                names.append(x509.DNSName(host))
        key = ec.generate_private_key(ec.SECP256R1())
        now = _dt.datetime.now(_dt.timezone.utc)
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _BACKDATE)
            .not_valid_after(now + _LEAF_LIFETIME)
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True, key_cert_sign=False, crl_sign=False,
                    content_commitment=False, key_encipherment=False, data_encipherment=False,
                    key_agreement=True, encipher_only=False, decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()), critical=False
            )
            .sign(self._key, hashes.SHA256())
        )
        cert_path, key_path = directory / f"{stem}-cert.pem", directory / f"{stem}-key.pem"
        _write_private(key_path, _pem_key(key))
        _write_public(cert_path, cert.public_bytes(serialization.Encoding.PEM))
        return cert_path, key_path

    def __repr__(self) -> str:
        return f"CertificateAuthority({str(self.cert_path)!r})"
