"""The front door's image, built by our own packaging (:func:`aml_core.oci.build_program_image`).

The image holds the sources of ``aml_core``, ``aml_provider_aks`` and ``aml_azure_common`` (which
the provider imports) under ``/opt/aml/lib``
(on ``PYTHONPATH``) and records its Python requirements in its labels, as scoring images do.
Its entrypoint starts :mod:`aml_provider_aks.frontdoor_host` on ``$AML_HOST:$AML_PORT``
(default ``0.0.0.0:8080``) and passes the container's ``args`` on, so a Deployment gives
only the options (``--admin-token-file``, ``--publish``, ...).

Without a base it is the app's layer only, which the emulator's cluster runs with the process
engine. For a real cluster give ``base=``: an image with ``python3`` and the requirements
installed (``scripts/build-base-image.sh`` makes one), onto which the layer is rebased.

The tag is content-addressed (``<version>-<digest prefix>``), so pushing the same build twice
is a no-op and a changed build never replaces what running pods pull.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import metadata
from pathlib import Path

from aml_core.images import ContainerRegistry
from aml_core.oci import EnvironmentSpec, Image, ProgramSpec, RegistryClient, build_program_image
from aml_core.oci.media import digest_hex

#: the repository the front door's image is pushed to
REPOSITORY = "azureml-fe"
#: the port the front door listens on inside its container
PORT = 8080
#: what the host needs beyond the scoring runtime's requirements (aml-core's own)
REQUIREMENTS = ("pyjwt>=2.8", "kubernetes>=29")
ENTRYPOINT = (
    "/bin/sh", "-c",
    'exec python3 -m aml_provider_aks.frontdoor_host --host "${AML_HOST:-0.0.0.0}" '
    f'--port "${{AML_PORT:-{PORT}}}" "$@"',
    REPOSITORY,  # $0 of the shell; the container's args follow as "$@"
)


def _package_dir(module: str) -> Path:
    imported = __import__(module)
    return Path(imported.__file__).parent


def _version() -> str:
    try:
        return metadata.version("aml-provider-aks")
    except metadata.PackageNotFoundError:
        return "0"


def frontdoor_spec(base: Image | None = None) -> ProgramSpec:
    """The :class:`~aml_core.oci.ProgramSpec` of the front door image."""
    return ProgramSpec(
        title=REPOSITORY,
        packages=(_package_dir("aml_core"), _package_dir("aml_provider_aks"), _package_dir("aml_azure_common")),
        environment=EnvironmentSpec(name=REPOSITORY, pip_requirements=REQUIREMENTS),
        entrypoint=ENTRYPOINT,
        port=PORT,
        base=base,
        labels={"org.opencontainers.image.version": _version()},
    )


def build_frontdoor_image(base: Image | None = None) -> Image:
    """Build the front door image in memory (deterministic for the same sources)."""
    return build_program_image(frontdoor_spec(base))


def push_frontdoor_image(registry: ContainerRegistry, *, base: Image | None = None,
                         progress: Callable[[str], None] = lambda text: None) -> str:
    """Build the image and push it to ``registry``; returns ``<registry>/azureml-fe:<tag>``."""
    progress("Building the front door image (aml_core, aml_provider_aks and aml_azure_common sources) ...")
    image = build_frontdoor_image(base)
    tag = f"{_version()}-{digest_hex(image.digest)[:12]}"
    progress(f"Pushing {REPOSITORY}:{tag} to {registry.address} ...")
    client = RegistryClient(registry.address, username=registry.username, password=registry.password)
    client.push_image(REPOSITORY, image, tags=(tag,))
    return f"{registry.address}/{REPOSITORY}:{tag}"
