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
for the process and state-file contract, :mod:`aml_core.runtime.config` for the spec file).

Settings read from the environment (the spec's ``env`` is applied to the workers first):

==============================  ==========================================================
``AZUREML_MODEL_DIR``           passed through to ``init()`` (``--model_dir``, spec)
``AZUREML_ENTRY_SCRIPT``        entry script, relative to the source dir or app root
``AZUREML_SOURCE_DIRECTORY``    put on ``sys.path``; relative to ``AML_APP_ROOT``
``AML_APP_ROOT``                default ``/var/azureml-app``
``SCORING_TIMEOUT_MS``          default 3 600 000; 500 "Scoring timeout after N ms"
``AML_MAX_BODY_BYTES``          default 100 MiB (the legacy nginx limit); 413 above it
``SERVICE_PATH_PREFIX``         routes also answer under this prefix; used in swagger
``SERVICE_NAME``/``_VERSION``   swagger ``info``
``WORKER_COUNT``                workers when ``--workers`` is not given (default 1)
``AZUREML_LOG_LEVEL``           runtime log level (default INFO)
``AML_ACCESS_LOG``              ``0`` turns the per-request log line off
``AML_CORS_ORIGINS``            comma-separated origins (or ``*``) that get CORS headers
``AML_HEADER_TIMEOUT_SECONDS``  close connections without a first request head (30)
``AML_RUNTIME_DRAIN_SECONDS``   how long a stopping worker serves accepted sockets (0.25)
``AML_RUNTIME_GRACEFUL_TIMEOUT`` in-flight requests' grace on stop (30 s)
``HTTP_X_MS_SERVER_VERSION``    echoed as ``x-ms-server-version``
==============================  ==========================================================
"""

from aml_core.runtime.raw import AMLRequest, AMLResponse, rawhttp

__all__ = ["AMLRequest", "AMLResponse", "rawhttp"]
