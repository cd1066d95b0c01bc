"""The catalog's own tables, in the ``catalog`` schema.

``connections`` is the catalog's view of keyvault's connections (learned from provider
events) plus how the last sync went; ``models`` holds every model a connection ever
offered. The Runtime adds the event tables to the same metadata.

``models`` is derived from the catalog's own events, not from keyvault's: replaying
provider events would list models again under new ids. Rebuilding it means folding
``catalog.events``; no command does that yet, which matters once a table is lost.
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    ForeignKey,
    Index,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from shared.db import UTCDateTime

metadata = MetaData(schema="catalog")

CONNECTION_ACTIVE = "active"
CONNECTION_DISCONNECTED = "disconnected"

connections = Table(
    "connections",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("workspace", String(36), nullable=False),
    Column("provider", String(50), nullable=False),
    Column("name", String(40), nullable=False),
    Column("base_url", Text, nullable=False),
    Column("status", String(20), nullable=False),
    Column("last_sync_at", UTCDateTime()),
    Column("last_sync_ok", Boolean),
    Column("last_sync_reason", Text),
)
Index("connections_workspace_idx", connections.c.workspace)

models = Table(
    "models",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("workspace", String(36), nullable=False),
    Column("connection", String(36), ForeignKey(connections.c.id), nullable=False),
    Column("upstream_id", Text, nullable=False),
    Column("name", Text, nullable=False),
    Column("owned_by", Text),
    Column("enabled", Boolean, nullable=False),
    Column("retired", Boolean, nullable=False),
    Column("discovered_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    UniqueConstraint("connection", "upstream_id", name="models_connection_upstream_key"),
)
Index("models_workspace_idx", models.c.workspace, models.c.name)
