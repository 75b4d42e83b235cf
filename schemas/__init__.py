"""Every message gpuroute sends, as msgspec Structs. Imports nothing from services/.

Importing this package registers every event type; decode any event with
:func:`decode_event`.
"""

from schemas import (
    adapter_settings,
    adapters,
    advisor,
    budget,
    cloud,
    flags,
    jobs,
    providers,
    scheduler,
    system,
    telemetry,
)
from schemas.envelope import (
    SCHEMA_VERSION,
    Event,
    EventType,
    decode_event,
    encode_event,
    event_type,
    event_types,
    events_json_schema,
    make_event,
    subject_of,
)
from schemas.subjects import registry, stream_subjects

__all__ = [
    "SCHEMA_VERSION",
    "Event",
    "EventType",
    "adapter_settings",
    "adapters",
    "advisor",
    "budget",
    "cloud",
    "decode_event",
    "encode_event",
    "event_type",
    "event_types",
    "events_json_schema",
    "flags",
    "jobs",
    "make_event",
    "providers",
    "registry",
    "scheduler",
    "stream_subjects",
    "subject_of",
    "system",
    "telemetry",
]
