"""The compute advisor's pure core: where a job runs, why, and what it costs.

    jobspec.py    parsing a job spec and filling in its defaults
    telemetry.py  TelemetrySource, NvmlTelemetry (pynvml + psutil), RecordedTelemetry
    config.py     AdvisorConfig: thresholds and constants, from TOML or embedded defaults
    vram.py       derived attributes: pixels, VRAM demand, minutes per target
    registry.py   provider profiles and their fold (provider.upserted / provider.removed)
    pricing.py    cost estimates, provider comparison, the cost preview
    decision.py   DecisionContext, Decision, AdviceRecord (the job.advised payload)
    rules.py      decide(spec, context, config): the pure decision
    state.py      the advisor's projection, turned into a DecisionContext
    whatif.py     re-run recorded decisions under another config
    errors.py     AdvisorError and its subclasses

Nothing here touches NATS, HTTP, a clock or the disk except telemetry (through
its injectable modules) and the explicit TOML loaders.
"""
