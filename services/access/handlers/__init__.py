"""Commands of access: load, decide, save.

Each command changes state and appends the events that record the change in one
transaction, then wakes the relay. A new aggregate's stream must be empty
(``expected_version=0``); a change to an existing one first locks the row it changes,
which makes it naturally idempotent, and appends after whatever is there.

- ``members``: the operator's workspace creation; adding, deactivating, reactivating
  and removing members; changing their role
- ``tokens``: issuing and revoking gateway tokens
- ``groups``: groups and who is in them
- ``rules``: which model is granted to whom
- ``workspaces``: the workspace's settings
"""
