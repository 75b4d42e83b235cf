"""The compute advisor: where a job runs, why, and what it costs.

The service (its messages are in ``schemas/advisor.py``, ``schemas/providers.py`` and
``schemas/telemetry.py``; docs/advisor.md):

    service.py    AdvisorService: its lifecycle, state from the store, seeding
    endpoints.py  the request/reply handlers (mixed into AdvisorService)
    jobs.py       JobConsumer: job.submitted -> job.advised
    replay.py     ``gpuroute replay --what-if``: rebuild recorded decisions from the log
    projection.py the provider registry as a replayable projection

The pure core:

    jobspec.py    parsing a job spec and filling in its defaults
    config.py     AdvisorConfig: thresholds and constants, from TOML or embedded defaults
    vram.py       derived attributes: pixels, VRAM demand, minutes per target
    registry.py   provider profiles and their fold (provider.upserted / provider.removed)
    pricing.py    cost estimates, provider comparison, the cost preview
    decision.py   DecisionContext, AdviceRecord (a decision with its full inputs)
    rules.py      decide(spec, context, config): the pure decision
    state.py      the advisor's projection, turned into a DecisionContext
    whatif.py     re-run recorded decisions under another config
    errors.py     AdvisorError and its subclasses

Nothing in the core touches NATS, HTTP, a clock or the disk except the explicit
TOML loaders. Telemetry reaches it as ``telemetry.sampled`` events
(services/telemetry/ samples each node).
"""
