"""Admin changes that must reach the proxy, each as a case that can be repeated.

A case starts from a state the proxy answers one way (``before``), makes one admin
change, and is settled once the proxy answers the other way (``after``); ``restore``
puts the state back so the case can run again. The end-to-end test runs each case once
against a deadline; ``bench/propagation.py`` runs them many times and reports the delay.
Nothing is restarted in between: the proxy follows the events.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

import httpx

from tests.e2e.access_flows import MESSAGES
from tests.support import Workspace, unique

Probe = Literal["chat", "model"]
Step = Callable[[], Awaitable[None]]


@dataclass
class Case:
    name: str
    token: Callable[[], str]
    before: int
    after: int
    change: Step
    restore: Step


@dataclass
class Lab:
    """A workspace with an enabled model, and the proxy to ask about it."""

    ws: Workspace
    model: dict[str, Any]
    proxy: httpx.AsyncClient

    async def status(self, token: str, probe: Probe = "chat") -> int:
        """How the proxy answers a member's call: a real chat call, or the model lookup,
        which runs the same authentication and access decision without the provider."""
        headers = {"Authorization": f"Bearer {token}"}
        if probe == "model":
            response = await self.proxy.get(f"/models/{self.model['name']}", headers=headers)
        else:
            response = await self.proxy.post(
                "/chat/completions",
                json={"model": self.model["name"], "messages": MESSAGES},
                headers=headers,
            )
        return response.status_code

    async def until(
        self, token: str, status: int, *, within: float, probe: Probe = "chat"
    ) -> float:
        """Ask as fast as answers come until the proxy answers ``status``; the seconds
        from the call to the first such answer's arrival."""
        started = time.perf_counter()
        deadline = started + within
        while True:
            answered = await self.status(token, probe)
            now = time.perf_counter()
            if answered == status:
                return now - started
            if now > deadline:
                raise AssertionError(f"still {answered}, not {status}, after {within}s")

    async def newcomer(self) -> tuple[dict[str, Any], str]:
        member = await self.ws.member("newcomer")
        return member, await self.ws.token_for(member["id"])

    async def grant(self, kind: str, principal_id: str) -> dict[str, Any]:
        rule: dict[str, Any] = await self.ws.ok(
            "POST",
            f"/access/v1/models/{self.model['id']}/rules",
            json={"principal_kind": kind, "principal_id": principal_id},
        )
        return rule

    async def revoke(self, rule: dict[str, Any]) -> None:
        await self.ws.ok("DELETE", f"/access/v1/models/{self.model['id']}/rules/{rule['id']}")


async def grant_case(lab: Lab) -> Case:
    member, token = await lab.newcomer()
    rule: dict[str, Any] = {}

    async def change() -> None:
        rule.update(await lab.grant("user", member["id"]))

    async def restore() -> None:
        await lab.revoke(rule)

    return Case("grant", lambda: token, 403, 200, change, restore)


async def revocation_case(lab: Lab) -> Case:
    member, token = await lab.newcomer()
    rule = await lab.grant("user", member["id"])

    async def change() -> None:
        await lab.revoke(rule)

    async def restore() -> None:
        rule.update(await lab.grant("user", member["id"]))

    return Case("rule revoked", lambda: token, 200, 403, change, restore)


async def group_removal_case(lab: Lab) -> Case:
    member, token = await lab.newcomer()
    group = await lab.ws.ok("POST", "/access/v1/groups", json={"name": unique("team")})
    path = f"/access/v1/groups/{group['id']}/members/{member['id']}"
    await lab.ws.ok("PUT", path)
    await lab.grant("group", group["id"])

    async def change() -> None:
        await lab.ws.ok("DELETE", path)

    async def restore() -> None:
        await lab.ws.ok("PUT", path)

    return Case("removed from group", lambda: token, 200, 403, change, restore)


async def deactivation_case(lab: Lab) -> Case:
    member, token = await lab.newcomer()
    await lab.grant("user", member["id"])

    async def change() -> None:
        await lab.ws.ok("POST", f"/access/v1/members/{member['id']}/deactivate")

    async def restore() -> None:
        await lab.ws.ok("POST", f"/access/v1/members/{member['id']}/reactivate")

    return Case("member deactivated", lambda: token, 200, 401, change, restore)


async def removal_case(lab: Lab) -> Case:
    """Removal is final, so each run removes a new member, granted through a group."""
    group = await lab.ws.ok("POST", "/access/v1/groups", json={"name": unique("team")})
    await lab.grant("group", group["id"])
    current: dict[str, Any] = {}

    async def arrive() -> None:
        member, token = await lab.newcomer()
        await lab.ws.ok("PUT", f"/access/v1/groups/{group['id']}/members/{member['id']}")
        current.update(member=member, token=token)

    async def change() -> None:
        await lab.ws.ok("DELETE", f"/access/v1/members/{current['member']['id']}")

    await arrive()
    return Case("member removed", lambda: str(current["token"]), 200, 401, change, arrive)


async def token_revocation_case(lab: Lab) -> Case:
    member, _ = await lab.newcomer()
    await lab.grant("user", member["id"])
    current: dict[str, Any] = {}

    async def issue() -> None:
        current.update(
            await lab.ws.ok(
                "POST", f"/access/v1/members/{member['id']}/tokens", json={"name": unique("t")}
            )
        )

    async def change() -> None:
        await lab.ws.ok("DELETE", f"/access/v1/tokens/{current['id']}")

    await issue()
    return Case("token revoked", lambda: str(current["token"]), 200, 401, change, issue)


async def disabled_model_case(lab: Lab) -> Case:
    member, token = await lab.newcomer()
    await lab.grant("user", member["id"])
    model_path = f"/catalog/v1/models/{lab.model['id']}"

    async def change() -> None:
        await lab.ws.ok("POST", f"{model_path}/disable")

    async def restore() -> None:
        await lab.ws.ok("POST", f"{model_path}/enable")

    return Case("model disabled", lambda: token, 200, 404, change, restore)


CASES: tuple[Callable[[Lab], Awaitable[Case]], ...] = (
    grant_case,
    revocation_case,
    group_removal_case,
    deactivation_case,
    removal_case,
    token_revocation_case,
    disabled_model_case,
)


async def delay(
    lab: Lab, case: Case, *, within: float, probe: Probe = "chat", settle: float = 15.0
) -> float:
    """One run of a case: wait for its starting state, change, time the effect."""
    await lab.until(case.token(), case.before, within=settle, probe=probe)
    await case.change()
    return await lab.until(case.token(), case.after, within=within, probe=probe)
