"""Telemetry: one sampler per node, publishing ``telemetry.sampled`` (docs/telemetry.md).

    service.py   TelemetryService: sample every interval, publish what the gate passes
    deadband.py  Gate and moved(): deadbands per reading and a keep-alive (pure)
    sources.py   TelemetrySource, NvmlTelemetry (pynvml + psutil), RecordedTelemetry

Its messages are in ``schemas/telemetry.py``, its settings (``[telemetry]``) in
``schemas/telemetry_settings.py``. The advisor and the budget service fold the
events; nothing imports this package but the CLI and the tests.
"""
