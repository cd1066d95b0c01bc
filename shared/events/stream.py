"""The JetStream stream that carries every service's events."""

from __future__ import annotations

from nats.js import JetStreamContext
from nats.js.api import RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import NotFoundError

# A resend of an event within this window is dropped by JetStream itself; beyond it,
# consumers still recognise the event id and skip it.
DUPLICATE_WINDOW_SECONDS = 600.0


async def ensure_stream(
    js: JetStreamContext, name: str, subject_prefix: str, replicas: int = 1
) -> None:
    """Create the stream if it is missing; leave an existing one as its operator set it."""
    try:
        await js.stream_info(name)
        return
    except NotFoundError:
        pass

    await js.add_stream(
        StreamConfig(
            name=name,
            subjects=[f"{subject_prefix}.>"],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            duplicate_window=DUPLICATE_WINDOW_SECONDS,
            num_replicas=replicas,
        )
    )
