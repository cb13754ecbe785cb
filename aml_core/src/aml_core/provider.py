"""The one module a provider imports from the core.

Everything a target's plugin needs (the hook marker and the records hooks receive and return,
the errors to raise, the handles the SDK gives users, image building and storage, model and
source staging, secret files) is named here, so a provider author reads one page and the
core can reorganise its other modules without breaking providers. The import-linter
contracts in the root ``pyproject.toml`` hold providers to it.

Code that runs *inside* an image (a scoring host, a module's main) imports the scoring
runtime's own modules under :mod:`aml_core.runtime` instead, so that the image does not load
the SDK.
"""

from __future__ import annotations

from aml_core.capabilities import Capabilities
from aml_core.compute import ComputeTarget, list_computes, load_compute
from aml_core.configfiles import JsonField
from aml_core.credentials import StaticTokenCredential
from aml_core.environment import Environment, default_environment
from aml_core.errors import (
    AmlError,
    AuthError,
    Conflict,
    DeploymentTimeout,
    InvalidConfig,
    NotFound,
    NotSupported,
    ProvisioningFailed,
    QuotaExceeded,
    WebserviceException,
)
from aml_core.hookspecs import hookimpl
from aml_core.images import (
    ContainerRegistry,
    Image,
    ModelPackage,
    build_and_store,
    deployment_image,
    package_spec,
    store_image,
    workspace_registry,
)
from aml_core.inference import InferenceConfig
from aml_core.model import Model, model_dir_layout, model_record
from aml_core.profiles import CloudProfile
from aml_core.records import (
    AuthRequest,
    AuthResult,
    ComputeRecord,
    DeploymentSpec,
    ImageRecord,
    ModelRecord,
    PackageRequest,
    ProvisionRequest,
    ScaleRequest,
    ServiceRecord,
    TargetKind,
    TrafficSplit,
    utcnow,
)
from aml_core.secure_files import private_dir, write_private
from aml_core.snapshot import SourceSnapshot
from aml_core.webservice import Webservice, WebserviceNotFound
from aml_core.workspace import Workspace

__all__ = [
    # declaring a target
    "hookimpl", "TargetKind", "Capabilities",
    # what hooks receive and return
    "AuthRequest", "AuthResult", "ComputeRecord", "DeploymentSpec", "ImageRecord", "ModelRecord",
    "PackageRequest", "ProvisionRequest", "ScaleRequest", "ServiceRecord", "TrafficSplit", "utcnow",
    # errors, and when to raise them: see docs/errors.md
    "AmlError", "AuthError", "Conflict", "DeploymentTimeout", "InvalidConfig", "NotFound", "NotSupported",
    "ProvisioningFailed", "QuotaExceeded", "WebserviceException",
    # the SDK's handles, which a provider's own handles and configurations extend
    "ComputeTarget", "Environment", "Image", "InferenceConfig", "Model", "ModelPackage", "Webservice",
    "WebserviceNotFound", "Workspace", "default_environment", "list_computes", "load_compute",
    # images: build, store, find the one a deployment runs
    "ContainerRegistry", "build_and_store", "deployment_image", "package_spec", "store_image",
    "workspace_registry",
    # models and sources
    "SourceSnapshot", "model_dir_layout", "model_record",
    # cloud access, az-ml config files and secrets on disk
    "CloudProfile", "StaticTokenCredential", "JsonField", "private_dir", "write_private",
]
