"""What can go wrong in keyvault, as one exception tree.

Exception tree::

    KeyvaultError
    ├── KeyringInvalid (ValueError)          the keyring is missing or malformed: refuse to start
    ├── SecretUnreadable (ValueError)        a stored secret does not decrypt for its row
    ├── InvalidConnection (ValueError)       a connection's name or base URL breaks a rule
    ├── ConnectionNotFound (LookupError)     no such connection in the caller's workspace
    ├── ConnectionNameTaken (ValueError)     an active connection of the workspace has the name
    └── ConnectionDisconnected (ValueError)  the connection was disconnected; its key is gone

A provider refusing a key is not here: it is an expected outcome, returned as a result and
recorded as an event. No message in this tree ever quotes key material.
"""

from __future__ import annotations


class KeyvaultError(Exception):
    """Root of keyvault's own errors."""


class KeyringInvalid(KeyvaultError, ValueError):
    """The keyring is missing or malformed; the service must not start."""


class SecretUnreadable(KeyvaultError, ValueError):
    """A stored secret failed to decrypt: tampered, moved to another row, or shredded."""


class InvalidConnection(KeyvaultError, ValueError):
    """A connection's name or base URL breaks a rule."""


class ConnectionNotFound(KeyvaultError, LookupError):
    """No connection with that id in the caller's workspace."""


class ConnectionNameTaken(KeyvaultError, ValueError):
    """An active connection of the workspace already has that name."""


class ConnectionDisconnected(KeyvaultError, ValueError):
    """The connection was disconnected and its key destroyed."""
