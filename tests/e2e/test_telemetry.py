"""What SREs see: spans with the GenAI conventions, one trace across services, Prometheus metrics."""

from __future__ import annotations

import re

import httpx
import pytest

from tests.e2e.conftest import OpenAIFor
from tests.e2e.flows import ready_model
from tests.emulator import EmulatorState
from tests.stack import Stack
from tests.support import Workspace, eventually

pytestmark = pytest.mark.e2e


async def test_chat_calls_are_traced_and_measured_with_genai_conventions(
    openai_for: OpenAIFor, stack: Stack, workspace: Workspace, emulator: tuple[EmulatorState, str]
) -> None:
    """A plain and a streamed call each leave a client span with gen_ai attributes, and the proxy's metrics count them."""
    ready = await ready_model(stack, workspace, emulator)
    client = openai_for(ready.token)
    messages = [{"role": "user", "content": "trace me"}]
    await client.chat.completions.create(model=ready.model["name"], messages=messages)
    stream = await client.chat.completions.create(
        model=ready.model["name"], messages=messages, stream=True
    )
    _ = [chunk async for chunk in stream]

    async def chat_spans() -> list[dict[str, object]] | None:
        found = [
            s
            for s in stack.spans()
            if s["name"] == f"chat {ready.model['name']}"
            and s["attributes"].get("byom.workspace.id") == workspace.id  # type: ignore[union-attr]
        ]
        return found if len(found) >= 2 else None

    spans = await eventually(chat_spans, within=10)
    for span in spans:
        attributes = span["attributes"]
        assert attributes["gen_ai.operation.name"] == "chat"  # type: ignore[index]
        assert attributes["gen_ai.request.model"] == "gpt-alpha"  # type: ignore[index]
        assert attributes["gen_ai.usage.output_tokens"] > 0  # type: ignore[index]
        assert span["kind"] == "CLIENT"

    async def metrics_with_usage_published() -> str | None:
        async with httpx.AsyncClient(base_url=stack.url("proxy")) as http:
            text = (await http.get("/proxy/metrics")).text
        published = re.search(r"^byom_proxy_usage_published\S*\s+([\d.e+]+)$", text, re.M)
        return text if published and float(published.group(1)) >= 2 else None

    text = await eventually(metrics_with_usage_published, within=10)
    assert "gen_ai_client_operation_duration_seconds_count" in text
    assert 'gen_ai_token_type="output"' in text
    assert "http_server_request_duration_seconds_bucket" in text
    assert re.search(r"^byom_proxy_usage_dropped\S*\s+0(\.0)?$", text, re.M), text
    assert re.search(r"^byom_proxy_usage_queued\S*\s+", text, re.M)
    assert ready.token not in text and ready.key not in text


async def test_an_admin_change_is_one_trace_from_the_request_to_the_consumer(
    stack: Stack, workspace: Workspace, emulator: tuple[EmulatorState, str]
) -> None:
    """Enabling a model: catalog's HTTP span and access's consumer span share one trace id, carried through NATS."""
    ready = await ready_model(stack, workspace, emulator, upstream_id="gpt-beta")
    traceparent = "00-" + "ab" * 16 + "-" + "cd" * 8 + "-01"
    await workspace.ok(
        "POST",
        f"/catalog/v1/models/{ready.model['id']}/disable",
        headers={"traceparent": traceparent},
    )

    async def joined() -> set[str] | None:
        names = {str(s["name"]) for s in stack.spans() if s["trace_id"] == "ab" * 16}
        consumed = any(n.startswith("process byom.model.disabled") for n in names)
        return names if consumed else None

    names = await eventually(joined, within=10)
    assert any(n.startswith("POST /catalog/v1/models/") for n in names)
