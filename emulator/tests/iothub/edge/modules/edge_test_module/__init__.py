"""A module for edge-device tests, run from an image: what it does is chosen by ``MODE``.

- ``sensor``: sends ``COUNT`` readings ``{"n": i}`` on output ``readings``, then idles;
- ``echo``: forwards every message from input ``input1`` to output ``output1`` as
  ``{"echo": <body>}``, keeping its properties;
- ``crash``: exits with code 3 at once.
"""
