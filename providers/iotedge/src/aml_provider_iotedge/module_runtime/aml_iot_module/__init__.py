"""What runs inside a scoring module image: the entry script's ``init()`` once, then every
message arriving on input ``amlInput`` is passed to ``run()`` and the result is sent on output
``amlOutput`` (JSON, the input's properties kept, ``correlation_id`` = the input's
``message_id``). A direct method ``score`` does the same for its payload and also returns
the result, so a deployment can be tried without a sensor.

``run()`` is called as the HTTP scoring server calls it: the message body as the data
argument, or, for inference-schema decorated scripts, the JSON object's keys as keyword
arguments. If ``run()`` raises, ``{"error": ...}`` goes out with property ``aml-error=true``.
"""
