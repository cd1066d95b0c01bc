"""The catalog's exceptions, turned into HTTP answers in one place (``api.install_errors``).

Exception tree::

    CatalogError
    ├── NotFound (LookupError)          no such id in the caller's workspace
    │   ├── ModelNotFound
    │   ├── ConnectionNotFound
    │   └── AliasNotFound
    ├── Refused                         conflicts with the state of what it names (409)
    ├── UnknownWorkspaces (LookupError) an offer names workspaces nobody has heard of
    ├── ConnectionDisconnected          the connection's key is gone; nothing to sync
    ├── KeyUnavailable (ConnectionError) keyvault would not or could not give the key
    └── UnknownProviderKind (LookupError) no adapter speaks for the connection's provider

A failed sync is not an exception: it is a result, recorded on the connection.
``KeyUnavailable`` and ``UnknownProviderKind`` never reach an admin as errors; they
become such a result.
"""

from __future__ import annotations


class CatalogError(Exception):
    """Something the catalog was asked could not be done."""


class NotFound(CatalogError, LookupError):
    """No such id in the caller's workspace; another workspace's ids are not found either."""


class ModelNotFound(NotFound):
    def __init__(self, model_id: str) -> None:
        super().__init__(f"no model with id {model_id!r} in this workspace")


class ConnectionNotFound(NotFound):
    def __init__(self, connection_id: str) -> None:
        super().__init__(f"no connection with id {connection_id!r} in this workspace")


class ConnectionDisconnected(CatalogError):
    def __init__(self, connection_id: str) -> None:
        super().__init__(f"connection {connection_id!r} is disconnected; connect it again first")


class KeyUnavailable(CatalogError, ConnectionError):
    """keyvault did not hand out the connection's key."""


class UnknownProviderKind(CatalogError, LookupError):
    def __init__(self, kind: str) -> None:
        super().__init__(f"no adapter speaks for provider kind {kind!r}")


class AliasNotFound(NotFound):
    def __init__(self, alias: str) -> None:
        super().__init__(f"no alias {alias!r} in this workspace")


class Refused(CatalogError):
    """A request that conflicts with the state of what it names (answered 409)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class UnknownWorkspaces(CatalogError, LookupError):
    """An offer named workspaces the catalog has not heard of (answered 422)."""

    def __init__(self, workspace_ids: list[str]) -> None:
        super().__init__(f"no workspace known by these ids: {', '.join(workspace_ids)}")
