"""The paths of the key-leak hunt: plant canaries through the real APIs, then touch them.

:class:`Driver` takes each path once and checks that it happened (the status, the fault
consumed, the key seen upstream) before naming it in the figure. What the paths leave
behind for the searches (every answer, the rewrap command's output) is kept in a
:class:`Hunt`.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson

from shared.service_auth import ServiceSigner
from tests.conftest import Infra
from tests.e2e.flows import discovered_models, grant_when_known, listed
from tests.e2e.leak_report import LeakFigure
from tests.e2e.leak_search import TOKEN_DISPLAY_PREFIX, Canary, RecordingTransport
from tests.emulator import EmulatorState
from tests.stack import ROOT, Stack
from tests.support import PrefixRouter, Workspace, eventually, unique

# The proxy's read timeout in the hunt, and an upstream delay well beyond it.
READ_TIMEOUT_SECONDS = 1.0
SLOW_UPSTREAM_SECONDS = 1.6
MESSAGES = [{"role": "user", "content": "tell me a secret"}]


@dataclass
class Hunt:
    """What the drive left behind for the searches."""

    stack: Stack
    infra: Infra
    emulator: EmulatorState
    canaries: list[Canary]
    answers: list[tuple[str, str]] = field(default_factory=list)
    command_output: list[str] = field(default_factory=list)
    workspace: Workspace | None = None
    member_id: str = ""


class Driver:
    """Plants the canaries through the real APIs and takes each path once."""

    def __init__(
        self,
        stack: Stack,
        infra: Infra,
        emulator: tuple[EmulatorState, str],
        figure: LeakFigure,
    ) -> None:
        self.stack = stack
        self.state, self.base_url = emulator
        self.figure = figure
        # Short markers only: a word like "canary" would also be in names and log lines.
        self.canary_key = "cnry" + secrets.token_urlsafe(36)
        self.refused_key = "rfsd" + secrets.token_urlsafe(36)
        self.other_key = "ordn" + secrets.token_urlsafe(36)
        self.hunt = Hunt(stack, infra, self.state, [])
        self.urls = {name: stack.url(name) for name in stack.services}
        self.signer = ServiceSigner(stack.env["BYOM_SERVICE_SECRET"].encode())

    def client(self) -> httpx.AsyncClient:
        """A client for the whole gateway whose every answer is recorded for the search."""
        return httpx.AsyncClient(
            base_url="http://gateway.invalid",
            transport=RecordingTransport(PrefixRouter(self.urls), self.hunt.answers),
            timeout=30,
        )

    def took(self, path: str) -> None:
        self.figure.path(path)

    async def drive(self) -> None:
        async with self.client() as http:
            self.http = http
            await self._plant()
            await self._connect_paths()
            await self._catalog_paths()
            await self._call_paths()
            await self._front_door_paths()
            await self._upstream_failure_paths()
            await self._keyvault_outage_path()
            await self._token_misuse_paths()
            await self._rewrap_paths()
            await self._ending_paths()
        # Let every service write its last lines, spans and events.
        await asyncio.sleep(1.0)

    async def _plant(self) -> None:
        """A workspace, a member and their tokens: the answers that show a token are not kept."""
        async with httpx.AsyncClient(
            base_url="http://gateway.invalid", transport=PrefixRouter(self.urls), timeout=30
        ) as unrecorded:
            created = await unrecorded.post(
                "/access/v1/workspaces",
                json={
                    "name": unique("leaky"),
                    "owner_email": f"{unique('owner')}@example.test",
                    "owner_name": "Owner",
                },
                headers={"Authorization": f"Bearer {self.stack.operator_token}"},
            )
            assert created.status_code == 201, created.text
            body = created.json()
            self.ws = Workspace(
                body["workspace"]["id"], body["token"]["token"], body["owner"]["id"], self.http
            )
            self.member = await self.ws.member("canary-holder")
            issued = await unrecorded.post(
                f"/access/v1/members/{self.member['id']}/tokens",
                json={"name": "canary"},
                headers={"Authorization": f"Bearer {self.ws.admin_token}"},
            )
            assert issued.status_code == 201, issued.text
            self.token = issued.json()["token"]
            self.token_id = issued.json()["id"]
        self.hunt.workspace, self.hunt.member_id = self.ws, self.member["id"]
        self.hunt.canaries = [
            Canary("canary provider key", self.canary_key),
            Canary("refused provider key", self.refused_key),
            Canary("ordinary provider key", self.other_key),
            Canary("canary gateway token", self.token, TOKEN_DISPLAY_PREFIX),
            Canary("admin gateway token", self.ws.admin_token, TOKEN_DISPLAY_PREFIX),
            Canary("operator token", self.stack.operator_token),
            Canary("service secret", self.stack.env["BYOM_SERVICE_SECRET"]),
            *keyring_canaries(self.stack),
        ]
        self.took("plant a workspace, a member and the canary gateway token")

    async def connect(self, key: str, name: str | None = None) -> httpx.Response:
        return await self.ws.call(
            "POST",
            "/keyvault/v1/connections",
            json={
                "provider": "openai-compatible",
                "name": name or unique("canary"),
                "base_url": self.base_url,
                "api_key": key,
            },
        )

    async def rotate(self, connection_id: str, key: str) -> httpx.Response:
        return await self.ws.call(
            "PUT", f"/keyvault/v1/connections/{connection_id}/key", json={"api_key": key}
        )

    async def _connect_paths(self) -> None:
        refused = await self.connect(self.canary_key)
        assert refused.status_code == 400, refused.text
        assert any(r.bearer == self.canary_key for r in self.state.requests)
        self.took("connect: the provider refuses the canary and echoes it")

        pasted_token = await self.connect(self.token)
        assert pasted_token.status_code == 400, pasted_token.text
        self.took("connect: a gateway token pasted as a provider key, refused and echoed")

        self.state.keys.update({self.canary_key, self.other_key})
        created = await self.connect(self.canary_key)
        assert created.status_code == 201, created.text
        self.connection = created.json()
        self.took("connect: the canary accepted")

        second = await self.connect(self.other_key)
        assert second.status_code == 201, second.text
        self.second = second.json()
        to_canary = await self.rotate(self.second["id"], self.canary_key)
        assert to_canary.status_code == 200, to_canary.text
        self.took("rotate: an ordinary key to the canary")

        refused_rotation = await self.rotate(self.second["id"], self.refused_key)
        assert refused_rotation.status_code == 400, refused_rotation.text
        self.took("rotate: the canary to a key the provider refuses and echoes")

        away = await self.rotate(self.second["id"], self.other_key)
        back = await self.rotate(self.second["id"], self.canary_key)
        assert (away.status_code, back.status_code) == (200, 200)
        self.took("rotate: from the canary to an ordinary key and back")

        shown = [
            await self.ws.ok("GET", "/keyvault/v1/connections"),
            await self.ws.ok("GET", f"/keyvault/v1/connections/{self.connection['id']}"),
        ]
        assert all(shown)
        self.took("keyvault: list and show the connections")

    async def _catalog_paths(self) -> None:
        models = await discovered_models(self.ws, self.connection["id"], count=2)
        self.model = next(m for m in models if m["upstream_id"] == "gpt-alpha")
        await self.ws.ok("POST", f"/catalog/v1/models/{self.model['id']}/enable")
        await grant_when_known(
            self.ws,
            self.model["id"],
            {"principal_kind": "user", "principal_id": self.member["id"]},
        )
        await eventually(lambda: listed(self.stack, self.token, self.model["name"]), within=10)
        self.took("catalog: the models listed with the canary, enabled and granted")

        synced = await self.ws.ok("POST", f"/catalog/v1/connections/{self.connection['id']}/sync")
        assert synced["ok"], synced
        self.took("catalog: a sync on demand reads the canary")

        self.state.keys.discard(self.canary_key)
        try:
            failed = await self.ws.ok(
                "POST", f"/catalog/v1/connections/{self.connection['id']}/sync"
            )
        finally:
            self.state.keys.add(self.canary_key)
        assert not failed["ok"] and failed["reason"], failed
        await self.ws.ok("GET", "/catalog/v1/connections")
        self.took("catalog: a sync refused by the provider echoing the canary")

    async def chat(
        self, *, stream: bool = False, headers: dict[str, str] | None = None
    ) -> httpx.Response:
        body: dict[str, Any] = {"model": self.model["name"], "messages": MESSAGES}
        if stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        return await self.http.post(
            "/v1/chat/completions",
            json=body,
            headers=headers or {"Authorization": f"Bearer {self.token}"},
        )

    async def _call_paths(self) -> None:
        plain = await self.chat()
        assert plain.status_code == 200, plain.text
        assert self.state.requests_to("/chat/completions")[-1].bearer == self.canary_key
        self.took("proxy: a plain call carries the canary upstream")

        streamed = await self.chat(stream=True)
        assert streamed.status_code == 200 and "[DONE]" in streamed.text, streamed.text
        self.took("proxy: a streamed call")

        by_header = await self.chat(headers={"x-api-key": self.token})
        assert by_header.status_code == 200, by_header.text
        self.took("proxy: the canary token in x-api-key")

        listed_models = await self.http.get(
            "/v1/models", headers={"Authorization": f"Bearer {self.token}"}
        )
        one = await self.http.get(
            f"/v1/models/{self.model['name']}", headers={"Authorization": f"Bearer {self.token}"}
        )
        assert (listed_models.status_code, one.status_code) == (200, 200)
        self.took("proxy: list and show models")

        not_json = await self.http.post(
            "/v1/chat/completions",
            content=b"{not json",
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
        )
        assert not_json.status_code == 400
        self.took("proxy: a body that is not JSON")

    async def _front_door_paths(self) -> None:
        """The other doors carry the canary too: Anthropic's messages, responses, embeddings."""
        name = self.model["name"]
        doors: list[tuple[str, str, dict[str, Any], dict[str, str]]] = [
            (
                "Anthropic messages",
                "/v1/messages",
                {"model": name, "max_tokens": 64, "messages": MESSAGES},
                {"x-api-key": self.token, "anthropic-version": "2023-06-01"},
            ),
            (
                "Anthropic messages, streamed",
                "/v1/messages",
                {"model": name, "max_tokens": 64, "messages": MESSAGES, "stream": True},
                {"x-api-key": self.token, "anthropic-version": "2023-06-01"},
            ),
            ("responses", "/v1/responses", {"model": name, "input": "hello"}, {}),
            ("embeddings", "/v1/embeddings", {"model": name, "input": "hello"}, {}),
        ]
        echoing = orjson.dumps({"error": {"message": f"Key {self.canary_key} failed"}})
        for door, path, body, headers in doors:
            headers = headers or {"Authorization": f"Bearer {self.token}"}
            answered = await self.http.post(path, json=body, headers=headers)
            assert answered.status_code == 200, (door, answered.text)
            self.took(f"proxy: {door}")

            self.state.fail_next(500, raw_body=echoing)
            failed = await self.http.post(path, json=body, headers=headers)
            assert failed.status_code == 502 and not self.state.faults, (door, failed.text)
            self.took(f"upstream: 500 echoing the canary through {door}")

            self.state.keys.discard(self.canary_key)
            try:
                refused = await self.http.post(path, json=body, headers=headers)
            finally:
                self.state.keys.add(self.canary_key)
            assert refused.status_code == 502, (door, refused.text)
            self.took(f"upstream: 401 echoing the canary through {door}")

    async def _upstream_failure_paths(self) -> None:
        echoing = orjson.dumps(
            {"error": {"message": f"Request with key {self.canary_key} failed", "type": "x"}}
        )
        cases: list[tuple[str, int, bytes | None, bool, set[int]]] = [
            ("429 echoing the canary, with Retry-After", 429, echoing, False, {429}),
            ("500 echoing the canary", 500, echoing, False, {502}),
            ("503", 503, None, False, {503}),
            ("400 echoing the canary in plain text", 400, self.canary_key.encode(), False, {400}),
            ("200 whose body is not JSON", 200, b"<html>oops</html>", False, set()),
            ("429 echoing the canary, streamed", 429, echoing, True, {429}),
            ("500 echoing the canary, streamed", 500, echoing, True, {502}),
            ("200 whose stream is garbage, streamed", 200, b"data: {oops\n\n", True, set()),
        ]
        for name, status, raw_body, stream, expected in cases:
            self.state.fail_next(
                status, retry_after=3 if status == 429 else None, raw_body=raw_body
            )
            answer = await self.chat(stream=stream)
            assert not self.state.faults, name
            assert not expected or answer.status_code in expected, (name, answer.text)
            self.took(f"upstream: {name}")

        self.state.keys.discard(self.canary_key)
        try:
            for stream in (False, True):
                refused = await self.chat(stream=stream)
                assert refused.status_code == 502, refused.text
                self.took(f"upstream: 401 echoing the canary{', streamed' if stream else ''}")
        finally:
            self.state.keys.add(self.canary_key)

        self.state.delay = SLOW_UPSTREAM_SECONDS
        try:
            for stream in (False, True):
                slow = await self.chat(stream=stream)
                assert slow.status_code == 504, slow.text
                self.took(
                    f"upstream: slower than the proxy's timeout{', streamed' if stream else ''}"
                )
        finally:
            self.state.delay = 0.0

        self.state.chunk_delay = SLOW_UPSTREAM_SECONDS
        try:
            cut = await self.chat(stream=True)
            assert cut.status_code == 200 and "[DONE]" not in cut.text, cut.text
        finally:
            self.state.chunk_delay = 0.0
        self.took("upstream: a stream that stalls between chunks past the timeout")

    async def _keyvault_outage_path(self) -> None:
        """With its key evicted by a rotation and keyvault down, the proxy cannot load the key."""
        rotated = await self.rotate(self.connection["id"], self.canary_key)
        assert rotated.status_code == 200, rotated.text
        # A graceful stop publishes the rotation's event first; the proxy then drops the key.
        await asyncio.to_thread(self.stack.stop, "keyvault")
        try:

            async def unavailable() -> bool:
                return (await self.chat()).status_code == 503

            await eventually(unavailable, within=10)
        finally:
            await asyncio.to_thread(self.stack.start, "keyvault")
        self.took("proxy: keyvault down when the canary must be fetched")

        recovered = await self.chat()
        assert recovered.status_code == 200, recovered.text
        self.took("proxy: fetches the canary again once keyvault is back")

    async def _token_misuse_paths(self) -> None:
        as_token = {"Authorization": f"Bearer {self.token}"}
        attempts = [
            await self.http.get("/keyvault/v1/connections", headers=as_token),
            await self.http.get(
                f"/keyvault/internal/v1/connections/{self.connection['id']}/key", headers=as_token
            ),
            await self.http.post("/keyvault/v1/keyring/rewrap", headers=as_token),
            await self.http.get("/catalog/v1/models", headers=as_token),
            await self.http.get("/access/v1/members", headers=as_token),
            await self.http.post(
                "/access/internal/v1/introspect", json={"token_hash": "0" * 64}, headers=as_token
            ),
        ]
        assert all(a.status_code in (401, 403) for a in attempts), [a.status_code for a in attempts]
        self.took("the canary token at admin and internal routes")

        mine = await self.http.get("/access/v1/me", headers=as_token)
        tokens = await self.http.get("/access/v1/tokens", headers=as_token)
        assert (mine.status_code, tokens.status_code) == (200, 200)
        self.took("access: who am I, and my tokens listed by prefix")

        in_query = await self.http.get(f"/v1/models?api_key={self.token}")
        assert in_query.status_code == 401
        self.took("proxy: the canary token in the query string instead of a header")

        key_as_token = {"Authorization": f"Bearer {self.canary_key}"}
        misused = [
            await self.http.post(
                "/v1/chat/completions",
                json={"model": self.model["name"], "messages": MESSAGES},
                headers=key_as_token,
            ),
            await self.http.get("/v1/models", headers={"x-api-key": self.canary_key}),
            await self.http.get("/keyvault/v1/connections", headers=key_as_token),
            await self.http.get(
                f"/keyvault/internal/v1/connections/{self.connection['id']}/key",
                headers=key_as_token,
            ),
            await self.http.get("/access/v1/me", headers=key_as_token),
        ]
        assert all(m.status_code == 401 for m in misused), [m.status_code for m in misused]
        self.took("the provider canary presented as a gateway token or service credential")

        service = {"Authorization": f"Bearer {self.signer.mint('access', 'keyvault')}"}
        not_a_reader = await self.http.get(
            f"/keyvault/internal/v1/connections/{self.connection['id']}/key", headers=service
        )
        assert not_a_reader.status_code == 403
        self.took("keyvault: a service that may not read keys asks for the canary")

    async def _rewrap_paths(self) -> None:
        for active in ("1", "2"):
            ran = await asyncio.to_thread(rewrap_command, self.stack, active)
            assert ran.returncode == 0, ran.stderr.decode()[-2000:]
            self.hunt.command_output.append(ran.stdout.decode() + ran.stderr.decode())
        self.took("the rewrap command moves the canary's data key there and back")

        operator = {"Authorization": f"Bearer {self.stack.operator_token}"}
        rewrapped = await self.http.post("/keyvault/v1/keyring/rewrap", headers=operator)
        assert rewrapped.status_code == 200, rewrapped.text
        self.took("the operator's rewrap over HTTP")

        after = await self.chat()
        assert after.status_code == 200, after.text
        self.took("proxy: a call after the rewraps")

    async def _ending_paths(self) -> None:
        for connection in (self.connection, self.second):
            await self.ws.ok("DELETE", f"/keyvault/v1/connections/{connection['id']}")

        async def gone() -> bool:
            return (await self.chat()).status_code == 404

        await eventually(gone, within=5)
        self.took("disconnect the canary's connections; the model is gone at the proxy")

        await self.ws.ok("DELETE", f"/access/v1/tokens/{self.token_id}")

        async def refused() -> bool:
            return (await self.chat()).status_code == 401

        await eventually(refused, within=5)
        self.took("revoke the canary token; the proxy refuses it")


def keyring_canaries(stack: Stack) -> list[Canary]:
    document = orjson.loads(stack.env["BYOM_KEYRING"])
    entries = {f"keyring entry {v}": key for v, key in document["keys"].items()}
    entries["fingerprint key"] = document["fingerprint_key"]
    return [Canary(name, value) for name, value in entries.items()]


def rewrap_command(stack: Stack, active: str) -> subprocess.CompletedProcess[bytes]:
    keyring = orjson.dumps({**orjson.loads(stack.env["BYOM_KEYRING"]), "active": active}).decode()
    return subprocess.run(
        [sys.executable, "-m", "services.keyvault", "rewrap"],
        cwd=ROOT,
        env={**os.environ, **stack.env, "BYOM_KEYRING": keyring},
        capture_output=True,
        timeout=60,
        check=False,
    )
