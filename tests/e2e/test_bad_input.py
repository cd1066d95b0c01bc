"""Malformed input to the admin APIs gets a clear 4xx, never a crash."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from shared.http import ADMIN_MAX_BODY_BYTES
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


@pytest.mark.parametrize(
    "base_url",
    # 127.0.0.1 itself is allowed in tests, where the emulators listen: ::1 is not.
    [
        "http://169.254.169.254/v1",
        "http://2852039166/v1",
        "http://[::1]:9/v1",
    ],
)
async def test_a_provider_base_url_aimed_at_metadata_or_loopback_is_refused(
    workspace: Workspace, base_url: str
) -> None:
    """keyvault refuses to send a key to a link-local, metadata or (unless allowed) loopback host, and stores nothing."""
    response = await workspace.call(
        "POST",
        "/keyvault/v1/connections",
        json={
            "provider": "openai-compatible",
            "name": "probe",
            "base_url": base_url,
            "api_key": "sk-" + "x" * 30,
        },
    )

    assert response.status_code == 422, response.text
    assert (
        "link-local" in response.json()["error"]["message"]
        or "loopback" in response.json()["error"]["message"]
    )
    listed = await workspace.ok("GET", "/keyvault/v1/connections")
    assert listed["data"] == []


@pytest.mark.parametrize(
    "path", ["/access/v1/tokens", "/catalog/v1/models/enable", "/keyvault/v1/connections"]
)
@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
async def test_an_oversized_admin_body_is_refused_unread(
    workspace: Workspace, path: str, declared: bool
) -> None:
    """A body past the admin routes' limit is a 413, whether its size is declared or not."""
    member = await workspace.member("bulky")
    token = await workspace.token_for(member["id"])
    body = b'{"name": "' + b"x" * (2 * ADMIN_MAX_BODY_BYTES) + b'"}'

    async def pieces() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 64 * 1024):
            yield body[start : start + 64 * 1024]

    response = await workspace.client.post(
        path,
        content=body if declared else pieces(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )

    assert response.status_code == 413, response.text
    assert response.json()["error"]["code"] == "request_too_large"
