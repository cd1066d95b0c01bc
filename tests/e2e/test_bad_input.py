"""Malformed input to the admin APIs gets a clear 4xx, never a crash."""

from __future__ import annotations

import pytest

from tests.support import Workspace

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/access/v1/groups", {"name": "a\u0000b"}),
        ("GET", "/access/v1/members/a%00b", None),
        ("GET", "/catalog/v1/models/a%00b", None),
        ("GET", "/keyvault/v1/connections/a%00b", None),
    ],
)
async def test_nul_bytes_are_refused_not_crashed_on(
    workspace: Workspace, method: str, path: str, body: dict[str, str] | None
) -> None:
    """A NUL byte in a body field or a path id gets a 4xx answer, never a 500."""
    response = await workspace.call(method, path, json=body)

    assert 400 <= response.status_code < 500, response.text
