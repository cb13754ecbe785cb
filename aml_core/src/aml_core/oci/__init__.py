"""OCI images without a container engine: build, push and pull, unpack safely.

* :func:`build_image` turns a :class:`PackageSpec` (app, models, environment, optional base)
  into a deterministic :class:`Image`; :func:`build_program_image` does the same for a
  :class:`ProgramSpec` (a Python program shipped as package sources, e.g. the AKS front
  door); :func:`write_layout`, :func:`write_docker_archive` and :func:`write_build_context`
  write it out as an OCI layout, a ``docker load`` archive or a Dockerfile build context.
* :class:`RegistryClient` pushes and pulls images over the distribution API.
* :func:`unpack_image` extracts an image into a digest-keyed cache, refusing hostile entries.
"""

from aml_core.oci.image import (
    AppSpec,
    EnvironmentSpec,
    Image,
    ModelFiles,
    PackageSpec,
    ProgramSpec,
    build_image,
    build_program_image,
    cached_image_from_rootfs,
    image_from_rootfs,
    parse_layout_location,
    read_layout,
    rebase,
    remove_from_layout,
    write_build_context,
    write_docker_archive,
    write_layout,
)
from aml_core.oci.layers import Blob, Layer, LayerBuilder
from aml_core.oci.registry import Reference, RegistryClient, RegistryError
from aml_core.oci.unpack import UnpackedImage, UnsafeArchive, unpack_image

__all__ = [
    "AppSpec",
    "Blob",
    "EnvironmentSpec",
    "Image",
    "Layer",
    "LayerBuilder",
    "ModelFiles",
    "PackageSpec",
    "ProgramSpec",
    "Reference",
    "RegistryClient",
    "RegistryError",
    "UnpackedImage",
    "UnsafeArchive",
    "build_image",
    "build_program_image",
    "cached_image_from_rootfs",
    "image_from_rootfs",
    "parse_layout_location",
    "read_layout",
    "rebase",
    "remove_from_layout",
    "unpack_image",
    "write_build_context",
    "write_docker_archive",
    "write_layout",
]
