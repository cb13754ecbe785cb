"""aml_core: deploy a model from a file to a running scoring service, offline or in Azure."""

from aml_core.capabilities import Capabilities
from aml_core.errors import (
    AmlError,
    AuthError,
    Conflict,
    InvalidConfig,
    NotFound,
    NotSupported,
    ProvisioningFailed,
    QuotaExceeded,
)
from aml_core.hookspecs import hookimpl
from aml_core.records import ServiceRecord, TargetKind
from aml_core.environment import Environment
from aml_core.inference import InferenceConfig
from aml_core.images import ContainerImage, Image
from aml_core.model import Model
from aml_core.webservice import Webservice
from aml_core.workspace import Workspace

__version__ = "0.1.0"
