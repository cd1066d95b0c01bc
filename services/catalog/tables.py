"""The catalog's own tables, in the ``catalog`` schema.

``connections`` is the catalog's view of keyvault's connections (learned from provider
events), how the last sync went, when the next is due (and which replica has claimed
it), and the policy for newly discovered models; ``models`` holds every model a
connection ever offered, with its description and price. The Runtime adds the event
tables to the same metadata.

The model list is read by workspace in name order, a page at a time: the index on
``(workspace, name, id)`` serves the order and the keyset cursor; the other filters
(provider, capability, enabled, a name substring) are checked on the rows the index
walks, which stays fast for the thousands of models a workspace has.

The install operator's connections are recorded with the workspace ``install``
(``domain.INSTALL_SCOPE``), their models too. Offering such a model to a workspace adds
a row of its own to ``models``: the workspace's entry for the model, with ``source``
"managed", its own id (so rules, switches and usage work as for the workspace's own
models) and ``offer_of`` naming the install model it follows. ``offers`` holds who each
install model is offered to; ``workspaces`` the workspaces the catalog learnt of from
access, so an offer to all of them reaches new ones. ``aliases`` are each workspace's
short names for its models.

``models`` is derived from the catalog's own events, not from keyvault's: replaying
provider events would list models again under new ids. Rebuilding it means folding
``catalog.events``; no command does that yet, which matters once a table is lost.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from services.catalog.domain import ModelDetails, Price
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
    Column("last_sync_success_at", UTCDateTime()),
    Column("sync_failures", Integer, nullable=False, default=0),
    # When the scheduler syncs the connection next; None is "as soon as it can".
    Column("next_sync_at", UTCDateTime()),
    # A replica that claimed the sync holds it until then; past it, another may take it.
    Column("sync_claimed_until", UTCDateTime()),
    Column("new_model_action", String(30), nullable=False, default="disabled"),
    Column("new_model_group_ids", JSON, nullable=False, default=list),
)
Index("connections_workspace_idx", connections.c.workspace)
Index("connections_due_idx", connections.c.status, connections.c.next_sync_at)

models = Table(
    "models",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("workspace", String(36), nullable=False),
    Column("connection", String(36), ForeignKey(connections.c.id), nullable=False),
    Column("upstream_id", Text, nullable=False),
    Column("name", Text, nullable=False),
    Column("owned_by", Text),
    # The connection's provider kind, copied here so the list filters without a join.
    Column("provider", String(50), nullable=False),
    Column("enabled", Boolean, nullable=False),
    Column("retired", Boolean, nullable=False),
    Column("discovered_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    Column("retired_at", UTCDateTime()),
    Column("display_name", Text),
    Column("family", Text),
    Column("context_window", Integer),
    Column("input_modalities", JSON, nullable=False, default=list),
    Column("output_modalities", JSON, nullable=False, default=list),
    Column("supports_tools", Boolean),
    # Space-separated tags between spaces (" tools vision "), for a LIKE on either backend.
    Column("capabilities", Text, nullable=False, default=" "),
    # US dollars per million tokens; input and output both None is "price unknown".
    Column("price_input", Float),
    Column("price_output", Float),
    Column("price_cached_input", Float),
    Column("successor", Text),
    # "byom" for the workspace's own connections, "managed" for an offered install model.
    Column("source", String(10), nullable=False, default="byom"),
    # For a managed entry: the install model it follows; None otherwise.
    Column("offer_of", String(36)),
    # A managed entry the operator no longer offers: off, not listed, its id kept.
    Column("withdrawn", Boolean, nullable=False, default=False),
    UniqueConstraint(
        "workspace", "connection", "upstream_id", name="models_workspace_connection_upstream_key"
    ),
)
Index("models_workspace_idx", models.c.workspace, models.c.name, models.c.id)
Index("models_offer_idx", models.c.offer_of)

workspaces = Table(
    "workspaces",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("created_at", UTCDateTime(), nullable=False),
)

offers = Table(
    "offers",
    metadata,
    # An install model, and who it is offered to.
    Column("model_id", String(36), ForeignKey(models.c.id), primary_key=True),
    Column("all_workspaces", Boolean, nullable=False, default=False),
    Column("workspace_ids", JSON, nullable=False, default=list),
    Column("updated_at", UTCDateTime(), nullable=False),
)

aliases = Table(
    "aliases",
    metadata,
    Column("workspace", String(36), primary_key=True),
    Column("name", String(64), primary_key=True),
    Column("model_id", String(36), ForeignKey(models.c.id), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
)


def detail_columns(details: ModelDetails) -> dict[str, Any]:
    """A model's description as the values of its row."""
    price = details.price
    tags = details.capabilities
    return {
        "display_name": details.display_name,
        "family": details.family,
        "context_window": details.context_window,
        "input_modalities": list(details.input_modalities),
        "output_modalities": list(details.output_modalities),
        "supports_tools": details.supports_tools,
        "capabilities": f" {' '.join(tags)} " if tags else " ",
        "price_input": price.input if price else None,
        "price_output": price.output if price else None,
        "price_cached_input": price.cached_input if price else None,
        "successor": details.successor,
    }


def details_of(row: Any) -> ModelDetails:
    """A model's description from its row (any row holding the description's columns)."""
    price = None
    if row.price_input is not None and row.price_output is not None:
        price = Price(row.price_input, row.price_output, row.price_cached_input)
    return ModelDetails(
        display_name=row.display_name,
        family=row.family,
        context_window=row.context_window,
        input_modalities=tuple(row.input_modalities or ()),
        output_modalities=tuple(row.output_modalities or ()),
        supports_tools=row.supports_tools,
        price=price,
        successor=row.successor,
    )


DETAIL_COLUMNS = (
    models.c.display_name,
    models.c.family,
    models.c.context_window,
    models.c.input_modalities,
    models.c.output_modalities,
    models.c.supports_tools,
    models.c.price_input,
    models.c.price_output,
    models.c.price_cached_input,
    models.c.successor,
)
