"""The access schema: state derived from access's own events, plus the models it learns
from catalog. The Runtime adds ``events``, ``relay_offsets`` and ``processed_events``.

Every table carries ``workspace_id`` so that every read can be scoped by it.
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
    UniqueConstraint,
)

from shared.db import UTCDateTime

metadata = MetaData(schema="access")

_ID = 36

workspaces = Table(
    "workspaces",
    metadata,
    Column("id", String(_ID), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    # Whether members may call models the catalog has no price for.
    Column("allow_unpriced_models", Boolean, nullable=False, default=True),
    # Which models members may call: "byom_only", "managed_only" or "both".
    Column("model_sources", String(20), nullable=False, default="both"),
)

users = Table(
    "users",
    metadata,
    Column("id", String(_ID), primary_key=True),
    Column("workspace_id", String(_ID), ForeignKey(workspaces.c.id), nullable=False),
    Column("email", String(254), nullable=False),
    # Lower-cased email: uniqueness per workspace ignores case. A removed member's key is
    # cleared, so the address can join the workspace again as a new member.
    Column("email_key", String(254)),
    Column("display_name", String(200), nullable=False),
    Column("role", String(16), nullable=False),
    Column("active", Boolean, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("deactivated_at", UTCDateTime()),
    # A removed member stays as a row, so their id still names someone in old records,
    # but every read of the workspace passes over them.
    Column("removed_at", UTCDateTime()),
    UniqueConstraint("workspace_id", "email_key", name="users_workspace_email_key"),
)

groups = Table(
    "groups",
    metadata,
    Column("id", String(_ID), primary_key=True),
    Column("workspace_id", String(_ID), ForeignKey(workspaces.c.id), nullable=False),
    Column("name", String(200), nullable=False),
    Column("name_key", String(200), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    UniqueConstraint("workspace_id", "name_key", name="groups_workspace_name_key"),
)

group_members = Table(
    "group_members",
    metadata,
    Column("group_id", String(_ID), ForeignKey(groups.c.id), primary_key=True),
    Column("user_id", String(_ID), ForeignKey(users.c.id), primary_key=True),
    Column("added_at", UTCDateTime(), nullable=False),
)

tokens = Table(
    "tokens",
    metadata,
    Column("id", String(_ID), primary_key=True),
    Column("workspace_id", String(_ID), ForeignKey(workspaces.c.id), nullable=False),
    Column("user_id", String(_ID), ForeignKey(users.c.id), nullable=False),
    Column("name", String(100), nullable=False),
    # sha256 hex of the token; the token itself is never stored.
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("prefix", String(16), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("expires_at", UTCDateTime()),
    Column("revoked_at", UTCDateTime()),
)
Index("tokens_user_idx", tokens.c.user_id)

# Known from catalog's model events; a rule may name only a model listed here.
models = Table(
    "models",
    metadata,
    Column("id", String(_ID), primary_key=True),
    Column("workspace_id", String(_ID), nullable=False),
    Column("connection_id", String(_ID), nullable=False),
    Column("name", String(300), nullable=False),
    Column("enabled", Boolean, nullable=False),
    Column("retired", Boolean, nullable=False),
    Column("discovered_at", UTCDateTime(), nullable=False),
)

rules = Table(
    "rules",
    metadata,
    Column("id", String(_ID), primary_key=True),
    Column("workspace_id", String(_ID), ForeignKey(workspaces.c.id), nullable=False),
    Column("model_id", String(_ID), nullable=False),
    Column("principal_kind", String(16), nullable=False),
    Column("principal_id", String(_ID), nullable=False),
    Column("permission", String(32), nullable=False),
    Column("granted_at", UTCDateTime(), nullable=False),
    UniqueConstraint(
        "workspace_id", "model_id", "principal_kind", "principal_id", name="rules_grant_key"
    ),
)
