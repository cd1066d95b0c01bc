"""The CloudEvents 1.0 envelope every event travels in.

Extension attributes (lower-case, as CloudEvents requires) carry the workspace, the
actor, the correlation id and the W3C trace context, so a consumer can tell who did
what, in which workspace, as part of which request, without opening ``data``.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field


def new_id() -> str:
    return str(uuid.uuid4())


def utcnow() -> datetime:
    return datetime.now(UTC)


class Envelope(BaseModel):
    """One event as stored, published and consumed."""

    model_config = ConfigDict(frozen=True, extra="allow")

    specversion: Literal["1.0"] = "1.0"
    id: str = Field(default_factory=new_id)
    source: str
    type: str
    subject: str
    time: datetime = Field(default_factory=utcnow)
    datacontenttype: Literal["application/json"] = "application/json"
    data: dict[str, Any]
    workspaceid: str | None = None
    actorid: str | None = None
    correlationid: str | None = None
    traceparent: str | None = None
    # Where the event sits in its aggregate's own history; two writers of one
    # aggregate cannot both claim the same version.
    streamid: str
    streamversion: int

    def to_json(self) -> bytes:
        return orjson.dumps(self.model_dump(mode="json", exclude_none=True))

    @classmethod
    def from_json(cls, raw: bytes | str) -> Envelope:
        return cls.model_validate(orjson.loads(raw))
