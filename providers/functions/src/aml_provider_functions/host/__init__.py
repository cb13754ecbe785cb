"""The Functions host that runs inside a function app image: ``python -m aml_provider_functions.host``.

It reads the app at ``AzureWebJobsScriptRoot`` (``host.json``, ``<function>/function.json``),
serves HTTP triggers on ``/api/<function>`` with the Functions key rules, and listens for
blob and Service Bus queue triggers with the real Azure Storage and Service Bus SDKs. See
app.py, http.py, blob.py and servicebus.py.
"""
