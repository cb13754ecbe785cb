"""Cloud profiles: where the providers find the cloud they talk to.

A profile names the Azure Resource Manager endpoint, the CA bundle to trust for it, the
subscription and resource group to work in, the container registry, and (for the emulator) a
static bearer token. Providers read every endpoint and credential from the profile, so
swapping the emulator for real Azure is configuration: there is never an ``if emulator:``
branch.

Where profiles live
-------------------
``$AML_PROFILE_DIR/<name>.json`` when ``AML_PROFILE_DIR`` is set, else
``~/.aml/profiles/<name>.json``. The name comes from the argument to :meth:`CloudProfile.load`,
else ``AML_PROFILE``, else ``"emulator"``. ``aml emulator start`` writes the ``emulator``
profile; files are written with mode 0600 because they may hold a token.

The "emulator" shape (written by ``aml emulator start``)::

    {"format": 1, "name": "emulator",
     "arm_endpoint": "https://127.0.0.1:50123",
     "ca_bundle": "~/.aml/emulator/ca.pem",
     "subscription_id": "3f5c...", "resource_group": "aml-emulator",
     "registry_name": "amlemulator", "registry_login_server": "127.0.0.1:50124",
     "arm_token": "<static token>", "kubeconfig": "~/.aml/emulator/kubeconfig",
     "extra": {}}

The "azure" shape (written by hand, or by a provider's own setup command)::

    {"format": 1, "name": "azure",
     "arm_endpoint": "https://management.azure.com",
     "ca_bundle": null,
     "subscription_id": "<your subscription id>", "resource_group": "<your group>",
     "registry_name": "myregistry", "registry_login_server": "myregistry.azurecr.io",
     "arm_token": null, "kubeconfig": null, "extra": {}}

With ``arm_token`` null the providers obtain a token at runtime from ``azure-identity``
(``DefaultAzureCredential``); with a token set they use
:class:`aml_core.credentials.StaticTokenCredential`. ``ca_bundle`` null means "trust the
system store". The core never imports an Azure SDK: it only carries these values.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Mapping

import attrs

from aml_core.errors import InvalidConfig, NotFound

#: version of the on-disk profile format; files written by a newer version are refused
PROFILE_FORMAT = 1
DEFAULT_PROFILE = "emulator"
ENV_PROFILE = "AML_PROFILE"
ENV_PROFILE_DIR = "AML_PROFILE_DIR"
#: the real Azure Resource Manager endpoint, for the "azure" profile shape
AZURE_ARM_ENDPOINT = "https://management.azure.com"
#: the token scope every azure-mgmt client asks for
ARM_SCOPE = "https://management.azure.com/.default"

_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")
_FIX = "Start the emulator with `aml emulator start`, or set AML_PROFILE to an existing profile."


_SECRET_WORDS = ("token", "password", "secret", "key")


def _masked(extra: Mapping[str, Any]) -> dict[str, Any]:
    """``extra`` for display: values under secret-looking keys are hidden."""
    return {k: ("***" if any(w in k.lower() for w in _SECRET_WORDS) else v) for k, v in extra.items()}


def _check_name(_instance: object, _attribute: object, value: str) -> None:
    if not value or not set(value) <= _NAME_CHARS or value.startswith("."):
        raise InvalidConfig(
            f"Profile name {value!r} is invalid: use letters, digits, '-', '_' and '.' "
            f"(and do not start with '.')."
        )


def _check_endpoint(_instance: object, _attribute: object, value: str) -> None:
    if not value.startswith(("https://", "http://")):
        raise InvalidConfig(
            f"arm_endpoint {value!r} is not an http(s) URL. " + _FIX
        )


def _optional_str(value: Any) -> str | None:
    return None if value is None else str(value)


def profile_dir() -> Path:
    """The directory holding profile files (``AML_PROFILE_DIR`` or ``~/.aml/profiles``)."""
    configured = os.environ.get(ENV_PROFILE_DIR)
    return Path(configured).expanduser() if configured else Path.home() / ".aml" / "profiles"


def profile_path(name: str) -> Path:
    """Where the profile called ``name`` is stored."""
    _check_name(None, None, name)
    return profile_dir() / f"{name}.json"


@attrs.frozen(kw_only=True)
class CloudProfile:
    """Endpoints and credentials of one cloud (the emulator, or real Azure).

    Build one with :meth:`load` or :meth:`from_dict`; change one with ``attrs.evolve``.
    """

    #: the profile's name, also its file name
    name: str = attrs.field(validator=_check_name)
    #: base URL of Azure Resource Manager (``https://management.azure.com`` for Azure)
    arm_endpoint: str = attrs.field(validator=_check_endpoint)
    #: PEM file of the CA that signed the ARM endpoint's certificate; ``None``: system store
    ca_bundle: str | None = attrs.field(default=None, converter=_optional_str)
    subscription_id: str
    resource_group: str
    registry_name: str
    #: ``host[:port]`` of the container registry, as used in image references
    registry_login_server: str
    #: a static ARM bearer token; ``None``: the provider gets one from azure-identity
    arm_token: str | None = attrs.field(default=None, repr=False, converter=_optional_str)
    #: path of a kubeconfig file for Kubernetes targets, when there is one
    kubeconfig: str | None = attrs.field(default=None, converter=_optional_str)
    #: provider-specific, non-portable settings (documented by the provider that reads them)
    extra: Mapping[str, Any] = attrs.field(factory=dict, converter=dict, hash=False, repr=lambda extra: repr(_masked(extra)))

    # -- construction ---------------------------------------------------------------------

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "profile") -> "CloudProfile":
        """Build a profile from its JSON form, naming the bad field if the data is malformed."""
        if not isinstance(data, Mapping):
            raise InvalidConfig(f"{source} is not a JSON object. {_FIX}")
        version = data.get("format", PROFILE_FORMAT)
        if not isinstance(version, int) or version > PROFILE_FORMAT:
            raise InvalidConfig(
                f"{source} has format {version!r}, newer than this version of aml understands "
                f"({PROFILE_FORMAT}). Upgrade aml-core, or rewrite it with `aml emulator start`."
            )
        required = ("name", "arm_endpoint", "subscription_id", "resource_group",
                    "registry_name", "registry_login_server")
        missing = [key for key in required if not isinstance(data.get(key), str) or not data[key]]
        if missing:
            raise InvalidConfig(f"{source} lacks {', '.join(missing)}. {_FIX}")
        known = {field.name for field in attrs.fields(cls)} | {"format"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InvalidConfig(
                f"{source} has unknown field(s) {', '.join(unknown)}; "
                f"put provider-specific settings under 'extra'."
            )
        extra = data.get("extra") or {}
        if not isinstance(extra, Mapping):
            raise InvalidConfig(f"{source}: 'extra' must be a JSON object.")
        return cls(
            name=data["name"],
            arm_endpoint=data["arm_endpoint"],
            ca_bundle=data.get("ca_bundle"),
            subscription_id=data["subscription_id"],
            resource_group=data["resource_group"],
            registry_name=data["registry_name"],
            registry_login_server=data["registry_login_server"],
            arm_token=data.get("arm_token"),
            kubeconfig=data.get("kubeconfig"),
            extra=extra,
        )

    @classmethod
    def load(cls, name: str | None = None) -> "CloudProfile":
        """Read a saved profile.

        :param name: the profile's name; default ``$AML_PROFILE``, else ``"emulator"``.
        :raises NotFound: no such profile file (the message says how to create one).
        :raises InvalidConfig: the file is not valid JSON or lacks a field.
        """
        if name is None:
            name = os.environ.get(ENV_PROFILE) or DEFAULT_PROFILE
        path = profile_path(name)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise NotFound(
                f"No cloud profile {name!r} at {path}. Start the emulator with "
                f"`aml emulator start` (it writes the 'emulator' profile), or set AML_PROFILE "
                f"to an existing profile (AML_PROFILE_DIR chooses the directory)."
            ) from None
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise InvalidConfig(
                f"Cloud profile {path} is not valid JSON ({exc.msg} at line {exc.lineno}). {_FIX}"
            ) from None
        profile = cls.from_dict(data, source=f"Cloud profile {path}")
        if profile.name != name:
            raise InvalidConfig(
                f"Cloud profile {path} is named {profile.name!r}, not {name!r}. {_FIX}"
            )
        return profile

    # -- serialisation --------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (includes the token: write it only to a 0600 file)."""
        return {
            "format": PROFILE_FORMAT,
            "name": self.name,
            "arm_endpoint": self.arm_endpoint,
            "ca_bundle": self.ca_bundle,
            "subscription_id": self.subscription_id,
            "resource_group": self.resource_group,
            "registry_name": self.registry_name,
            "registry_login_server": self.registry_login_server,
            "arm_token": self.arm_token,
            "kubeconfig": self.kubeconfig,
            "extra": dict(self.extra),
        }

    def save(self, directory: str | Path | None = None) -> Path:
        """Write the profile atomically with mode 0600 and return its path.

        :param directory: where to write; default :func:`profile_dir`.
        """
        target_dir = Path(directory) if directory is not None else profile_dir()
        target_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = target_dir / f"{self.name}.json"
        # mkstemp creates the file 0600 from the start: the token is never world-readable.
        fd, tmp = tempfile.mkstemp(prefix=f".{self.name}.", suffix=".tmp", dir=target_dir)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(self.to_dict(), handle, indent=2)
                handle.write("\n")
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(tmp, 0o600)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path

    # -- what providers use ---------------------------------------------------------------

    @property
    def connection_verify(self) -> str | bool:
        """What to pass as azure-core's ``connection_verify`` (or requests' ``verify``)."""
        return self.ca_bundle if self.ca_bundle else True

    @property
    def credential_scopes(self) -> list[str]:
        """The token scopes for ARM clients pointed at :attr:`arm_endpoint`."""
        return [ARM_SCOPE]
