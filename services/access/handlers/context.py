"""What every command receives besides its arguments: who asks, as part of which request."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import UniqueConstraint
from sqlalchemy.exc import IntegrityError

from services.access.tables import metadata
from shared.events.store import Actor
from shared.principal import Principal


@dataclass(frozen=True, slots=True)
class Caller:
    """Who issues a command, and the request it belongs to."""

    principal: Principal
    correlation_id: str | None = None

    @property
    def workspace_id(self) -> str:
        return self.principal.workspace_id

    @property
    def actor(self) -> Actor:
        return Actor(self.principal.workspace_id, self.principal.user_id, self.correlation_id)


def violates(error: IntegrityError, constraint: str) -> bool:
    """Whether a failed write broke this named unique constraint (and not another)."""
    diag = getattr(error.orig, "diag", None)
    if diag is not None:
        return getattr(diag, "constraint_name", None) == constraint

    # SQLite names the constraint's columns instead: "UNIQUE constraint failed: t.a, t.b".
    columns = _unique_columns(constraint)
    return columns is not None and str(error.orig).endswith(f"UNIQUE constraint failed: {columns}")


def _unique_columns(constraint: str) -> str | None:
    for table in metadata.tables.values():
        for candidate in table.constraints:
            if isinstance(candidate, UniqueConstraint) and candidate.name == constraint:
                return ", ".join(f"{table.name}.{column.name}" for column in candidate.columns)
    return None
