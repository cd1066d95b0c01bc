"""Reading and writing connections and their sealed secrets, inside the caller's transaction."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import Row, Select, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from services.keyvault.cipher import SealedSecret, SecretOwner
from services.keyvault.domain import Connection, KeyReads
from services.keyvault.tables import Tables
from shared.db import upsert

NAME_INDEX = "connections_active_name_key"


@dataclass(frozen=True, slots=True)
class StoredSecret:
    """A connection's sealed key, with what it is bound to and where to use it."""

    owner: SecretOwner
    sealed: SealedSecret
    provider: str
    base_url: str


class ConnectionRepository:
    """The queries of keyvault's two tables; each runs in the connection it is given."""

    def __init__(self, tables: Tables) -> None:
        self._connections = tables.connections
        self._secrets = tables.secrets
        self._reads = tables.key_reads

    async def get(
        self, conn: AsyncConnection, workspace_id: str, connection_id: str
    ) -> Connection | None:
        c = self._connections
        query = self._select().where(c.c.workspace_id == workspace_id, c.c.id == connection_id)
        row = (await conn.execute(query)).first()
        if row is None:
            return None

        return (await self._with_reads(conn, [_connection(row)]))[0]

    async def in_workspace(self, conn: AsyncConnection, workspace_id: str) -> list[Connection]:
        c = self._connections
        query = self._select().where(c.c.workspace_id == workspace_id).order_by(c.c.connected_at)
        connections = [_connection(row) for row in await conn.execute(query)]
        return await self._with_reads(conn, connections)

    async def name_in_use(self, conn: AsyncConnection, workspace_id: str, name: str) -> bool:
        c = self._connections
        query = select(c.c.id).where(
            c.c.workspace_id == workspace_id, c.c.name == name, c.c.status == "active"
        )
        return (await conn.execute(query)).first() is not None

    async def add(
        self, conn: AsyncConnection, connection: Connection, sealed: SealedSecret
    ) -> None:
        await conn.execute(
            insert(self._connections).values(
                id=connection.id,
                workspace_id=connection.workspace_id,
                provider=connection.provider,
                name=connection.name,
                base_url=connection.base_url,
                status=connection.status,
                masked_key=connection.masked_key,
                fingerprint=connection.fingerprint,
                connected_at=connection.connected_at,
                connected_by=connection.connected_by,
            )
        )
        await conn.execute(
            insert(self._secrets).values(
                connection_id=connection.id,
                secret_version=connection.secret_version,
                sealed_at=connection.connected_at,
                **_sealed_columns(sealed),
            )
        )

    async def replace_secret(
        self, conn: AsyncConnection, rotated: Connection, sealed: SealedSecret, at: datetime
    ) -> None:
        c, s = self._connections, self._secrets
        await conn.execute(
            update(c)
            .where(c.c.id == rotated.id)
            .values(
                masked_key=rotated.masked_key,
                fingerprint=rotated.fingerprint,
                key_rotated_at=at,
            )
        )
        await conn.execute(
            update(s)
            .where(s.c.connection_id == rotated.id)
            .values(secret_version=rotated.secret_version, sealed_at=at, **_sealed_columns(sealed))
        )

    async def disconnect(
        self, conn: AsyncConnection, connection_id: str, by: str, at: datetime
    ) -> None:
        """Mark the connection disconnected and destroy its wrapped data key."""
        c, s = self._connections, self._secrets
        await conn.execute(
            update(c)
            .where(c.c.id == connection_id)
            .values(status="disconnected", disconnected_at=at, disconnected_by=by)
        )
        await conn.execute(
            update(s)
            .where(s.c.connection_id == connection_id)
            .values(wrapped_data_key=None, wrap_nonce=None)
        )

    async def read_secret(
        self, conn: AsyncConnection, connection_id: str, reader: str, at: datetime
    ) -> StoredSecret | None:
        """An active connection's sealed key, counting the read in the same transaction."""
        c, s = self._connections, self._secrets
        # Updating the connection first locks its row: a disconnect in flight finishes
        # before this read, which then finds the connection no longer active.
        counted = (
            update(c)
            .where(c.c.id == connection_id, c.c.status == "active")
            .values(read_count=c.c.read_count + 1, last_read_at=at)
            .returning(c.c.id)
        )
        if (await conn.execute(counted)).first() is None:
            return None

        query = (
            select(
                c.c.workspace_id,
                c.c.provider,
                c.c.base_url,
                s.c.secret_version,
                s.c.keyring_version,
                s.c.ciphertext,
                s.c.nonce,
                s.c.wrapped_data_key,
                s.c.wrap_nonce,
            )
            .join(s, s.c.connection_id == c.c.id)
            .where(c.c.id == connection_id)
        )
        row = (await conn.execute(query)).first()
        if row is None:
            return None

        await self._count_read(conn, connection_id, row.secret_version, reader, at)
        return _stored_secret(connection_id, row)

    async def _count_read(
        self,
        conn: AsyncConnection,
        connection_id: str,
        secret_version: int,
        reader: str,
        at: datetime,
    ) -> None:
        r = self._reads
        first = upsert(conn, r).values(
            connection_id=connection_id,
            secret_version=secret_version,
            reader=reader,
            read_count=1,
            first_read_at=at,
            last_read_at=at,
        )
        await conn.execute(
            first.on_conflict_do_update(
                index_elements=[r.c.connection_id, r.c.secret_version, r.c.reader],
                set_={"read_count": r.c.read_count + 1, "last_read_at": at},
            )
        )

    async def wrapped_under_other_than(self, conn: AsyncConnection, version: str) -> list[str]:
        """Ids of connections whose live data key is wrapped under another keyring version."""
        s = self._secrets
        query = select(s.c.connection_id).where(
            s.c.keyring_version != version, s.c.wrapped_data_key.is_not(None)
        )
        return list((await conn.scalars(query)).all())

    async def secret_for_update(
        self, conn: AsyncConnection, connection_id: str
    ) -> StoredSecret | None:
        """A connection's sealed key, locked until the transaction ends; no read is counted."""
        c, s = self._connections, self._secrets
        query = (
            select(
                c.c.workspace_id,
                c.c.provider,
                c.c.base_url,
                s.c.secret_version,
                s.c.keyring_version,
                s.c.ciphertext,
                s.c.nonce,
                s.c.wrapped_data_key,
                s.c.wrap_nonce,
            )
            .join_from(s, c, s.c.connection_id == c.c.id)
            .where(s.c.connection_id == connection_id)
            .with_for_update(of=s)
        )
        row = (await conn.execute(query)).first()
        return _stored_secret(connection_id, row) if row is not None else None

    async def store_wrapping(
        self, conn: AsyncConnection, connection_id: str, sealed: SealedSecret
    ) -> None:
        s = self._secrets
        await conn.execute(
            update(s)
            .where(s.c.connection_id == connection_id)
            .values(
                keyring_version=sealed.keyring_version,
                wrapped_data_key=sealed.wrapped_data_key,
                wrap_nonce=sealed.wrap_nonce,
            )
        )

    async def _with_reads(
        self, conn: AsyncConnection, connections: Sequence[Connection]
    ) -> list[Connection]:
        r = self._reads
        if not connections:
            return []

        query = (
            select(r)
            .where(r.c.connection_id.in_([c.id for c in connections]))
            .order_by(r.c.connection_id, r.c.secret_version.desc(), r.c.reader)
        )
        reads: defaultdict[str, list[KeyReads]] = defaultdict(list)
        for row in await conn.execute(query):
            fields = row._asdict()
            reads[fields.pop("connection_id")].append(KeyReads(**fields))

        return [replace(c, reads=tuple(reads[c.id])) for c in connections]

    def _select(self) -> Select[Any]:
        c, s = self._connections, self._secrets
        return select(
            c.c.id,
            c.c.workspace_id,
            c.c.provider,
            c.c.name,
            c.c.base_url,
            c.c.status,
            c.c.masked_key,
            c.c.fingerprint,
            s.c.secret_version,
            c.c.connected_at,
            c.c.connected_by,
            c.c.key_rotated_at,
            c.c.disconnected_at,
            c.c.read_count,
            c.c.last_read_at,
        ).join_from(c, s, s.c.connection_id == c.c.id)


def _sealed_columns(sealed: SealedSecret) -> dict[str, object]:
    return {
        "keyring_version": sealed.keyring_version,
        "ciphertext": sealed.ciphertext,
        "nonce": sealed.nonce,
        "wrapped_data_key": sealed.wrapped_data_key,
        "wrap_nonce": sealed.wrap_nonce,
    }


def _stored_secret(connection_id: str, row: Row[*tuple[Any, ...]]) -> StoredSecret:
    return StoredSecret(
        owner=SecretOwner(row.workspace_id, connection_id, row.secret_version),
        sealed=SealedSecret(
            ciphertext=row.ciphertext,
            nonce=row.nonce,
            wrapped_data_key=row.wrapped_data_key,
            wrap_nonce=row.wrap_nonce,
            keyring_version=row.keyring_version,
        ),
        provider=row.provider,
        base_url=row.base_url,
    )


def _connection(row: Row[*tuple[Any, ...]]) -> Connection:
    return Connection(**row._asdict())
