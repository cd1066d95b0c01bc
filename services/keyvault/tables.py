"""keyvault's tables, in its own ``keyvault`` schema.

``connections`` is what admins see; ``connection_secrets`` holds the sealed key of each
connection, one row per connection, replaced on rotation. The two are apart so that the
key material sits in one place that is easy to audit and to scan. ``key_reads`` counts,
per connection, key version and reading service, how often the plain key was handed out:
a counter, not a log of each read.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import (
    BigInteger,
    Column,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    text,
)

from shared.db import UTCDateTime

SCHEMA = "keyvault"


@dataclass(frozen=True, slots=True)
class Tables:
    metadata: MetaData
    connections: Table
    secrets: Table
    key_reads: Table


def define_tables() -> Tables:
    """Fresh metadata for one app: the runtime adds the event tables to it."""
    metadata = MetaData(schema=SCHEMA)
    connections = Table(
        "connections",
        metadata,
        Column("id", String(36), primary_key=True),
        Column("workspace_id", String(36), nullable=False),
        Column("provider", String(40), nullable=False),
        Column("name", String(40), nullable=False),
        Column("base_url", String(2000), nullable=False),
        Column("status", String(20), nullable=False),
        Column("masked_key", String(40), nullable=False),
        Column("fingerprint", String(80), nullable=False),
        Column("connected_at", UTCDateTime(), nullable=False),
        Column("connected_by", String(36), nullable=False),
        Column("key_rotated_at", UTCDateTime()),
        Column("disconnected_at", UTCDateTime()),
        Column("disconnected_by", String(36)),
        Column("read_count", BigInteger, nullable=False, server_default=text("0")),
        Column("last_read_at", UTCDateTime()),
    )
    Index("connections_workspace_idx", connections.c.workspace_id, connections.c.connected_at)
    # Names are unique among a workspace's active connections; a disconnected one frees its name.
    Index(
        "connections_active_name_key",
        connections.c.workspace_id,
        connections.c.name,
        unique=True,
        postgresql_where=text("status = 'active'"),
        sqlite_where=text("status = 'active'"),
    )
    secrets = Table(
        "connection_secrets",
        metadata,
        Column(
            "connection_id",
            String(36),
            ForeignKey(connections.c.id, ondelete="RESTRICT"),
            primary_key=True,
        ),
        Column("secret_version", Integer, nullable=False),
        Column("keyring_version", String(20), nullable=False),
        Column("ciphertext", LargeBinary, nullable=False),
        Column("nonce", LargeBinary, nullable=False),
        # NULL once shredded: without the data key the ciphertext is noise.
        Column("wrapped_data_key", LargeBinary),
        Column("wrap_nonce", LargeBinary),
        Column("sealed_at", UTCDateTime(), nullable=False),
    )
    key_reads = Table(
        "key_reads",
        metadata,
        Column(
            "connection_id",
            String(36),
            ForeignKey(connections.c.id, ondelete="RESTRICT"),
            primary_key=True,
        ),
        Column("secret_version", Integer, primary_key=True),
        # The service whose credential read the key: "proxy", "catalog".
        Column("reader", String(40), primary_key=True),
        Column("read_count", BigInteger, nullable=False),
        Column("first_read_at", UTCDateTime(), nullable=False),
        Column("last_read_at", UTCDateTime(), nullable=False),
    )
    return Tables(metadata=metadata, connections=connections, secrets=secrets, key_reads=key_reads)
