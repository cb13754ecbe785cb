"""The scoring runtime: the HTTP server that hosts a user's ``score.py``.

It keeps the contract of Azure ML's inference server (``azureml-inference-server-http``):
``GET /`` → ``Healthy``; ``POST /score`` → ``run(body)``; ``GET /score`` with query
parameters; ``/swagger.json`` from inference-schema decorators; raw-request mode; the
request-id headers; the error statuses; ``init()`` failures exit with status 3.

Scripts written for Azure import the raw-request API from
``azureml.contrib.services.aml_request`` / ``aml_response``; inside the runtime those names
resolve to the classes exported here when the Azure package is not installed::

    from aml_core.runtime import AMLRequest, AMLResponse, rawhttp

Run a service with ``python -m aml_core.runtime serve`` (see :mod:`aml_core.runtime.supervisor`
for the process and state-file contract).
"""

from aml_core.runtime.raw import AMLRequest, AMLResponse, rawhttp

__all__ = ["AMLRequest", "AMLResponse", "rawhttp"]
