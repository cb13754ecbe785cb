"""aml-provider-functions: a model packaged as an Azure Functions app (``azureml.contrib.functions``):
``package`` and the per-trigger helpers build the image (packaging.py); the Functions host that
runs inside it is :mod:`aml_provider_functions.host`."""

from aml_provider_functions.packaging import (BLOB_TRIGGER, HTTP_TRIGGER, SERVICE_BUS_QUEUE_TRIGGER, package,
                                              package_blob, package_http, package_service_bus_queue)

__all__ = ["BLOB_TRIGGER", "HTTP_TRIGGER", "SERVICE_BUS_QUEUE_TRIGGER", "package", "package_blob", "package_http",
           "package_service_bus_queue"]
