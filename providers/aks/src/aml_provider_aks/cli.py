"""``aml aks ...``: what an AKS compute target needs set up on its cluster.

Registered in the ``aml.cli`` entry-point group, so the core's ``aml`` command adds it without
importing this provider until the command is used.
"""

from __future__ import annotations

import click
from aml_core.cli import State
from aml_core.frontdoor import kube

from aml_provider_aks.frontdoor_install import DEFAULT_TIMEOUT

pass_state = click.make_pass_decorator(State, ensure=True)


@click.group("aks")
def aks() -> None:
    """AKS compute targets: set up their cluster for scoring services."""


@aks.command("install-frontdoor")
@click.option("--compute", "compute", required=True, metavar="NAME",
              help="The AKS compute target (provisioned or attached) whose cluster gets the front door.")
@click.option("--image", default=None,
              help="Run the front door from this image of yours (python on its PATH, aml-provider-aks "
                   "installed, pullable by the cluster) instead of building ours and pushing it to the "
                   "workspace's registry.")
@click.option("--base-image", "base_image", default=None, metavar="oci:DIR[:TAG] | ROOTFS.tar",
              help="For clusters that run real containers: a base image with python3 and the requirements, "
                   "under our image's layer: an OCI layout, or the root file system tarball that "
                   "scripts/build-base-image.sh prints.")
@click.option("--namespace", default=kube.NAMESPACE, show_default=True, help="Namespace of the front door's pods.")
@click.option("--replicas", default=1, show_default=True, type=click.IntRange(min=1),
              help="Front door pods (keep 1 for services with token auth; see the docs).")
@click.option("--timeout", default=DEFAULT_TIMEOUT, show_default=True, type=click.FloatRange(min=1),
              help="Seconds to wait for the load balancer's address, and again for the pods.")
@click.option("-o", "--output", type=click.Choice(["table", "json"]), default=None,
              help="Output format: table (default) or json.")
@pass_state
def install_frontdoor_command(state: State, compute: str, image: str | None, base_image: str | None,
                              namespace: str, replicas: int, timeout: float, output: str | None) -> None:
    """Install the front door (the router before scoring services) on COMPUTE's cluster.

    Builds the front door's image and pushes it to the workspace's registry (unless --image),
    creates its service account and read-only roles, an admin-token Secret, a LoadBalancer
    Service (port 80) and a Deployment running it, then publishes the address in ConfigMap
    azureml/azureml-fe, where deployments look for it. Running it again updates the
    installation and keeps the admin token.
    """
    from aml_core.errors import InvalidConfig
    from aml_core.images import workspace_registry

    from aml_provider_aks.frontdoor_install import install_frontdoor
    from aml_provider_aks.provision import kubeconfig_for

    if output:
        state.output = output
    kubeconfig = kubeconfig_for(state.workspace, compute)
    registry = base = None
    if image is None:
        registry = workspace_registry(state.workspace)
        if registry is None:
            raise InvalidConfig(
                f"Workspace {state.workspace.name!r} keeps images in its embedded store, which no cluster can "
                "pull from: create it with container_registry='profile:NAME', or give --image.")
        if base_image:
            base = _base_image(base_image)
    elif base_image:
        raise InvalidConfig("--base-image applies to the image built here; leave it out with --image.")
    frontdoor = install_frontdoor(kubeconfig, image, registry=registry, base=base, namespace=namespace,
                                  replicas=replicas, timeout=timeout, progress=state.note)
    state.emit({"compute": compute, "namespace": namespace, "url": frontdoor.url, "replicas": replicas,
                "image": image or "built"}, lambda console: console.print(frontdoor.url, markup=False, highlight=False))


def _base_image(location: str):
    """``oci:DIR[:TAG]``, or a root file system tarball (made into a one-layer image once)."""
    from pathlib import Path

    from aml_core.errors import InvalidConfig
    from aml_core.oci import cached_image_from_rootfs, parse_layout_location, read_layout

    if location.startswith("oci:"):
        directory, tag = parse_layout_location(location)
        return read_layout(directory, tag=tag)
    if location.endswith(".tar") and Path(location).is_file():
        return cached_image_from_rootfs(Path(location))
    raise InvalidConfig(f"--base-image {location!r} is neither an OCI layout (oci:DIR[:TAG]) nor an existing "
                        "root file system .tar (what scripts/build-base-image.sh prints).")
