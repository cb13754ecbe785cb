"""The provider hook specifications.

A provider is a module (found through the ``aml.providers`` entry-point group) with
``@hookimpl`` functions. Every lifecycle hook is a *first-result dispatch*: the core calls
all providers, and each returns ``None`` unless the target kind in its arguments is its
own. The core raises :class:`~aml_core.errors.NoProviderError` when nobody answers, and
:class:`~aml_core.errors.NotSupported` before calling a hook whose capability the target
did not declare. Call hooks through :class:`aml_core.plugins.Hooks`, never positionally.

A complete minimal provider::

    # my_provider/__init__.py   (pyproject: [project.entry-points."aml.providers"] mine = "my_provider")
    from aml_core import hookimpl, Capabilities, TargetKind, ServiceRecord

    @hookimpl
    def aml_target_kinds(add):
        add(TargetKind(name="mine", provider="my-provider", capabilities=Capabilities(package=False)))

    @hookimpl
    def aml_deploy(workspace, spec):
        if spec.kind != "mine":
            return None
        ...  # start the service
        return ServiceRecord(name=spec.name, kind="mine", state="Healthy", scoring_uri="http://...")

    @hookimpl
    def aml_status(workspace, service):
        if service.kind != "mine":
            return None
        return service

    @hookimpl
    def aml_delete(workspace, service):
        if service.kind != "mine":
            return None
        ...  # stop it; return False if it was already gone
        return True
"""

from __future__ import annotations

import pluggy

PROJECT_NAME = "aml"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


# --------------------------------------------------------------------------------------
# discovery
# --------------------------------------------------------------------------------------


@hookspec
def aml_target_kinds(add):
    """Announce the target kinds this provider serves.

    :param add: call ``add(TargetKind(...))`` once per kind, with its capabilities.
    :returns: nothing; the return value is ignored.

    Dispatch: every provider is called (not first-result).

    :raises: the core raises :class:`~aml_core.errors.Conflict` naming both providers when
        two announce the same kind.

    Guarantees: called once when the plugin manager starts; must not do I/O.

    .. versionadded:: 0.1
    """


# --------------------------------------------------------------------------------------
# models
# --------------------------------------------------------------------------------------


@hookspec(firstresult=True)
def aml_register(workspace, request):
    """Store a new model version in the workspace's model registry.

    :param workspace: the :class:`~aml_core.workspace.Workspace`; its ``backend`` names the
        registry implementation (``"embedded"`` is the core's SQLite + artifact store).
    :param request: a :class:`~aml_core.records.RegisterRequest`.
    :returns: the new :class:`~aml_core.records.ModelRecord`, or ``None`` if
        ``workspace.backend`` is not yours.

    Dispatch: first result.

    :raises InvalidConfig: the name breaks the naming rule, or the path is missing or holds
        a symlink that leaves it.

    Guarantees: blocking; atomic (a crash leaves either the whole version or nothing);
    concurrent registrations of one name get distinct consecutive versions.

    .. versionadded:: 0.1
    """


# --------------------------------------------------------------------------------------
# build
# --------------------------------------------------------------------------------------


@hookspec(firstresult=True)
def aml_package(workspace, request):
    """Package models, entry script and environment into what the target runs.

    :param workspace: the workspace.
    :param request: a :class:`~aml_core.records.PackageRequest`; ``request.kind`` is the
        target kind. From ``Image.create`` with a target's own image configuration (one with
        a ``target_kind``, e.g. ``AccelContainerImage.image_configuration()``),
        ``request.inference_config`` is that configuration; store the image with
        :func:`aml_core.images.store_image` and set ``details["target_kind"]`` so that
        ``Webservice.deploy_from_image`` dispatches to you.
    :returns: an :class:`~aml_core.records.ImageRecord`, or ``None`` if ``request.kind`` is
        not yours.

    Dispatch: first result; needs the ``package`` capability.

    :raises InvalidConfig: the entry script or environment is unusable.

    Guarantees: blocking; the same inputs give the same digest.

    .. versionadded:: 0.1
    """


# --------------------------------------------------------------------------------------
# compute
# --------------------------------------------------------------------------------------


@hookspec(firstresult=True)
def aml_provision(workspace, request):
    """Create (or attach, when ``request.attach``) compute for a target.

    :param workspace: the workspace.
    :param request: a :class:`~aml_core.records.ProvisionRequest`.
    :returns: a :class:`~aml_core.records.ComputeRecord`, or ``None`` if ``request.kind`` is
        not yours.

    Dispatch: first result; needs the ``provision`` capability.

    :raises Conflict: the name is taken or the cluster is already attached.
    :raises InvalidConfig: the configuration breaks a rule (e.g. cluster size for FastProd).
    :raises ProvisioningFailed: the cloud (or emulator) reported a failure.

    Guarantees: returns a handle at once; its state moves to Succeeded or Failed.

    .. versionadded:: 0.1
    """


@hookspec(firstresult=True)
def aml_compute_delete(workspace, compute, detach):
    """Release compute: delete what was provisioned, or only forget what was attached.

    :param workspace: the workspace.
    :param compute: the :class:`~aml_core.records.ComputeRecord` stored for it.
    :param detach: if true, leave the cluster (or device, or plan) running and only drop the
        workspace's link to it; if false, delete the resource in the cloud (or emulator).
    :returns: ``True`` if something was released, ``False`` if it was already gone, ``None``
        if ``compute.kind`` is not yours.

    Dispatch: first result; needs the ``provision`` capability.

    :raises InvalidConfig: ``detach`` is false for compute that was attached (delete it where
        it was created, or detach it).
    :raises ProvisioningFailed: the cloud (or emulator) refused the deletion.

    Guarantees: blocking; idempotent (releasing released compute returns ``False``).

    .. versionadded:: 0.1
    """


# --------------------------------------------------------------------------------------
# services
# --------------------------------------------------------------------------------------


@hookspec(firstresult=True)
def aml_deploy(workspace, spec):
    """Create a service from models, an inference config and a deployment config.

    :param workspace: the workspace.
    :param spec: a :class:`~aml_core.records.DeploymentSpec`; ``spec.kind`` is the target.
        ``spec.image`` is set (and ``spec.inference_config`` is ``None``) when the service comes
        from ``Webservice.deploy_from_image``: run that image as it is;
        :func:`aml_core.images.deployment_image` returns it, or packages one from the spec.
    :returns: the new :class:`~aml_core.records.ServiceRecord`, or ``None`` if ``spec.kind``
        is not yours.

    Dispatch: first result.

    :raises Conflict: a service of that name exists and ``spec.overwrite`` is false, or a
        resource it needs (e.g. a port) is taken.
    :raises InvalidConfig: the entry script lacks ``init()`` or ``run()``, or the
        configuration is malformed.
    :raises ProvisioningFailed: the service did not become healthy; the message points to
        the logs.
    :raises NotSupported: ``spec.image`` is set and the target cannot run a packaged image.

    Guarantees: blocking until the service is healthy or failed; reports progress through
    ``spec.progress``; on failure nothing of an earlier service of the same name is lost.

    .. versionadded:: 0.1
    """


@hookspec(firstresult=True)
def aml_status(workspace, service):
    """Read a service's current state.

    :param workspace: the workspace.
    :param service: the :class:`~aml_core.records.ServiceRecord` last stored.
    :returns: a refreshed :class:`~aml_core.records.ServiceRecord`, or ``None`` if
        ``service.kind`` is not yours.

    Dispatch: first result.

    :raises: nothing for a vanished service: return it with state ``"Failed"`` or
        ``"Deleted"`` and an ``error`` that says what happened.

    Guarantees: no side effects.

    .. versionadded:: 0.1
    """


@hookspec(firstresult=True)
def aml_logs(workspace, service, num_lines, init):
    """Return a service's logs.

    :param workspace: the workspace.
    :param service: the :class:`~aml_core.records.ServiceRecord`.
    :param num_lines: at most this many of the last lines.
    :param init: if true, the logs of the start-up (``init()``) phase only, where the target
        keeps them apart.
    :returns: the log text, or ``None`` if ``service.kind`` is not yours.

    Dispatch: first result; needs the ``logs`` capability.

    :raises NotFound: the service has no logs any more.

    Guarantees: no side effects.

    .. versionadded:: 0.1
    """


@hookspec(firstresult=True)
def aml_update(workspace, service, spec):
    """Replace a running service's models, code, environment or settings.

    :param workspace: the workspace.
    :param service: the current :class:`~aml_core.records.ServiceRecord`.
    :param spec: the new :class:`~aml_core.records.DeploymentSpec` (fields the caller did
        not change are copied from the current deployment by the core).
    :returns: the updated :class:`~aml_core.records.ServiceRecord`, or ``None`` if
        ``service.kind`` is not yours.

    Dispatch: first result; needs the ``update`` capability.

    :raises InvalidConfig: the new entry script or configuration is unusable.
    :raises ProvisioningFailed: the new version did not become healthy; the old one keeps
        serving.

    Guarantees: blocking; no request fails during the switch where the target can promise
    it (rolling or blue/green).

    .. versionadded:: 0.1
    """


@hookspec(firstresult=True)
def aml_delete(workspace, service):
    """Stop a service and release everything it holds.

    :param workspace: the workspace.
    :param service: the :class:`~aml_core.records.ServiceRecord`.
    :returns: ``True`` if something was deleted, ``False`` if it was already gone, ``None``
        if ``service.kind`` is not yours.

    Dispatch: first result.

    :raises: nothing for a missing service (idempotent).

    Guarantees: blocking; leaves no process, container or cluster object behind.

    .. versionadded:: 0.1
    """


# --------------------------------------------------------------------------------------
# auth, scale, traffic
# --------------------------------------------------------------------------------------


@hookspec(firstresult=True)
def aml_auth(workspace, service, request):
    """Read or rotate a service's keys, or issue a token.

    :param workspace: the workspace.
    :param service: the :class:`~aml_core.records.ServiceRecord`.
    :param request: an :class:`~aml_core.records.AuthRequest`.
    :returns: an :class:`~aml_core.records.AuthResult`, or ``None`` if ``service.kind`` is
        not yours.

    Dispatch: first result; needs ``auth_keys`` (keys) or ``auth_token`` (tokens).

    :raises InvalidConfig: ``key_type`` is not Primary or Secondary.
    :raises AuthError: the service has this kind of auth switched off.

    Guarantees: ``regen_key`` invalidates the old key at once and leaves the other key
    working.

    .. versionadded:: 0.1
    """


@hookspec(firstresult=True)
def aml_scale(workspace, service, request, deployment_config):
    """Set a service's replica count or autoscale bounds.

    :param workspace: the workspace.
    :param service: the :class:`~aml_core.records.ServiceRecord`.
    :param request: a :class:`~aml_core.records.ScaleRequest`.
    :param deployment_config: the service's deployment configuration with the request
        applied (its ``with_scale(request, replicas)``), as the core will store it; ``None``
        when the caller keeps none, and the provider reads the current settings from the target.
    :returns: the updated :class:`~aml_core.records.ServiceRecord`, or ``None`` if
        ``service.kind`` is not yours.

    Dispatch: first result; needs ``scale`` (or ``autoscale`` for the autoscale fields).
    ``Webservice.scale()`` calls it under the service's operation lock and stores the record
    and the configuration; a provider never writes the workspace itself.

    :raises InvalidConfig: counts are not positive, or min > max.

    Guarantees: returns once the request is accepted; replicas converge afterwards.

    .. versionadded:: 0.1
    """


@hookspec(firstresult=True)
def aml_traffic(workspace, service, split):
    """Set the traffic percentage of each version of an endpoint.

    :param workspace: the workspace.
    :param service: the endpoint's :class:`~aml_core.records.ServiceRecord`.
    :param split: a :class:`~aml_core.records.TrafficSplit`.
    :returns: the updated :class:`~aml_core.records.ServiceRecord`, or ``None`` if
        ``service.kind`` is not yours.

    Dispatch: first result; needs ``traffic_split``.

    :raises NotFound: a version named in the split does not exist.
    :raises InvalidConfig: percentages are out of range or add up to more than 100.

    Guarantees: applies atomically; traffic not assigned goes to the default version.

    .. versionadded:: 0.1
    """
