"""A simulated temperature sensor module (like Microsoft's SimulatedTemperatureSensor):
sends ``SENSOR_COUNT`` readings (0: forever), one every ``SENSOR_INTERVAL_SECONDS``, after
``SENSOR_START_DELAY_SECONDS`` (0 by default), on output
``temperatureOutput``. Each reading is ``{"n": i, "machine": {"temperature", "pressure"},
"ambient": {"temperature", "humidity"}, "timeCreated"}`` with ``message_id`` = ``n`` and
the property ``sequence`` = ``n``; the values follow a deterministic ramp so tests can predict
them.
"""
